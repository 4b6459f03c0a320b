"""Preferences: every key parsed and checked by name; defaults < the project's suggestions < local."""

from __future__ import annotations

import json
import logging
from dataclasses import fields

import pytest

from tessera_client.prefs import FIELDS, PreferenceError, Preferences, PreferenceStore


@pytest.fixture
def store(tmp_path) -> PreferenceStore:
    return PreferenceStore(tmp_path / "prefs.json")


def test_every_preference_is_described_for_the_help():
    assert list(FIELDS) == [f.name for f in fields(Preferences)]
    assert all(meaning.strip() for meaning in FIELDS.values())


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("max_cpus", "0", 0),
        ("max_cpus", " 4 ", 4),
        ("cpu_percent", "1", 1),
        ("cpu_percent", "100", 100),
        ("run_if_user_active", "no", False),
        ("run_if_user_active", "YES", True),
        ("run_if_user_active", "off", False),
        ("run_if_user_active", "On", True),
        ("idle_minutes", "10", 10),
        ("run_on_batteries", "true", True),
        ("run_on_batteries", "False", False),
        ("disk_max_gb", "2.5", 2.5),
        ("disk_max_gb", "100", 100.0),
        ("work_buf_hours", "0", 0.0),
        ("work_buf_hours", "0.25", 0.25),
        ("start_hour", "9:05", "09:05"),
        ("start_hour", "00:00", "00:00"),
        ("end_hour", "23:59", "23:59"),
        ("use_gpus", "no", False),
        ("use_gpus", "Yes", True),
    ],
)
def test_each_preference_is_parsed_from_text(store, key, text, value):
    store.set(key, text)

    effective = getattr(store.effective(), key)
    assert effective == value and type(effective) is type(value)
    assert PreferenceStore(store.path).local() == {key: value}


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("max_cpus", "-1"),
        ("max_cpus", "2.5"),
        ("max_cpus", "lots"),
        ("cpu_percent", "0"),
        ("cpu_percent", "101"),
        ("cpu_percent", "half"),
        ("run_if_user_active", "maybe"),
        ("run_if_user_active", ""),
        ("idle_minutes", "0"),
        ("idle_minutes", "1441"),
        ("run_on_batteries", "2"),
        ("disk_max_gb", "0"),
        ("disk_max_gb", "nan"),
        ("disk_max_gb", "inf"),
        ("work_buf_hours", "-1"),
        ("work_buf_hours", "1e9"),
        ("start_hour", "24:00"),
        ("start_hour", "12:60"),
        ("start_hour", "9"),
        ("end_hour", "7pm"),
        ("use_gpus", "sometimes"),
    ],
)
def test_a_bad_value_names_the_preference_and_changes_nothing(store, key, text):
    store.set("cpu_percent", "50")
    before = store.path.read_bytes()

    with pytest.raises(PreferenceError, match=key):
        store.set(key, text)

    assert store.path.read_bytes() == before
    assert store.local() == {"cpu_percent": 50}


def test_an_unknown_preference_is_refused_and_the_known_ones_listed(store):
    with pytest.raises(PreferenceError, match=r"turbo.*cpu_percent"):
        store.set("turbo", "yes")
    with pytest.raises(PreferenceError, match="turbo"):
        store.unset("turbo")

    assert not store.path.exists()


def test_local_settings_beat_the_project_which_beats_the_defaults(store):
    store.set("cpu_percent", "60")
    suggested = {"cpu_percent": 20, "work_buf_hours": 4, "run_on_batteries": "yes"}

    prefs = store.effective(suggested)

    assert (prefs.cpu_percent, prefs.work_buf_hours, prefs.run_on_batteries) == (60, 4.0, True)
    assert prefs.idle_minutes == Preferences().idle_minutes == 3
    assert store.sources(suggested) == {
        **dict.fromkeys(FIELDS, "default"),
        "cpu_percent": "local",
        "work_buf_hours": "project",
        "run_on_batteries": "project",
    }


def test_unset_hands_the_value_back_to_the_project(store):
    store.set("work_buf_hours", "8")
    store.unset("work_buf_hours")
    store.unset("work_buf_hours")  # unsetting twice is no error

    assert store.effective({"work_buf_hours": 2}).work_buf_hours == 2.0
    assert store.sources({"work_buf_hours": 2})["work_buf_hours"] == "project"
    assert store.local() == {}


def test_nonsense_from_the_project_is_ignored_with_a_warning(store, caplog):
    suggested = {
        "cpu_percent": 1000,
        "max_cpus": 2.5,
        "idle_minutes": True,
        "start_hour": None,
        "rm -rf": True,
        "work_buf_hours": 2,
    }

    with caplog.at_level(logging.WARNING, logger="tessera_client.prefs"):
        prefs = store.effective(suggested)

    assert prefs == Preferences(work_buf_hours=2.0)
    warned = " ".join(record.getMessage() for record in caplog.records)
    for key in ("cpu_percent", "max_cpus", "idle_minutes", "start_hour", "rm -rf"):
        assert key in warned
    assert store.sources(suggested)["cpu_percent"] == "default"


def test_suggestions_that_are_not_an_object_are_ignored(store):
    assert store.effective(["not", "a", "dict"]) == Preferences()  # type: ignore[arg-type]
    assert store.effective("cpu_percent=5") == Preferences()  # type: ignore[arg-type]
    assert store.effective(None) == Preferences()


def test_the_file_holds_only_what_the_volunteer_set_and_survives_a_reopen(store):
    store.set("max_cpus", "2")
    store.set("run_on_batteries", "yes")
    store.set("start_hour", "8:30")
    store.set("max_cpus", "3")

    assert json.loads(store.path.read_text()) == {
        "max_cpus": 3,
        "run_on_batteries": True,
        "start_hour": "08:30",
    }
    again = PreferenceStore(store.path)
    assert again.effective() == Preferences(max_cpus=3, run_on_batteries=True, start_hour="08:30")
    assert [p.name for p in store.path.parent.iterdir()] == ["prefs.json"]  # no temporary left


def test_setting_a_preference_makes_a_missing_folder(tmp_path):
    store = PreferenceStore(tmp_path / "not" / "yet" / "prefs.json")

    store.set("cpu_percent", "30")

    assert PreferenceStore(tmp_path / "not" / "yet" / "prefs.json").local() == {"cpu_percent": 30}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{cpu_percent: 5", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"cpu_percent": 500}', "cpu_percent must be a number from 1 to 100"),
        ('{"turbo": true}', "no preference 'turbo'"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_a_damaged_file_is_a_clear_error_naming_it(store, content, words):
    if isinstance(content, bytes):
        store.path.write_bytes(content)
    else:
        store.path.write_text(content)

    for use in (
        store.local,
        store.effective,
        lambda: store.sources(None),
        lambda: store.set("max_cpus", "1"),
    ):
        with pytest.raises(PreferenceError) as error:
            use()
        assert words in str(error.value) and str(store.path) in str(error.value)
    assert store.path.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def test_an_unreadable_prefs_path_is_a_clear_error(tmp_path):
    (tmp_path / "prefs.json").mkdir()

    with pytest.raises(PreferenceError, match=r"prefs\.json"):
        PreferenceStore(tmp_path / "prefs.json").effective()


def test_cpus_follow_the_cores():
    assert Preferences().cpus(8) == 8
    assert Preferences(max_cpus=2).cpus(8) == 2
    assert Preferences(max_cpus=16).cpus(8) == 8
    assert Preferences().cpus(0) == 1


def test_gpus_are_used_unless_the_volunteer_or_the_project_says_no(store):
    assert Preferences().use_gpus is True
    assert store.effective({"use_gpus": False}).use_gpus is False
    store.set("use_gpus", "yes")
    assert store.effective({"use_gpus": False}).use_gpus is True
