"""Preferences: parsed and checked by name; defaults < the project's suggestions < local."""

from __future__ import annotations

import pytest

from tessera_client.prefs import FIELDS, PreferenceError, Preferences, PreferenceStore


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("max_cpus", "2", 2),
        ("cpu_percent", "40", 40),
        ("run_if_user_active", "no", False),
        ("run_if_user_active", "On", True),
        ("idle_minutes", "10", 10),
        ("run_on_batteries", "true", True),
        ("disk_max_gb", "2.5", 2.5),
        ("work_buf_hours", "0", 0.0),
        ("start_hour", "9:05", "09:05"),
        ("end_hour", "23:59", "23:59"),
    ],
)
def test_each_preference_is_parsed_from_text(tmp_path, key, text, value):
    store = PreferenceStore(tmp_path / "prefs.json")

    store.set(key, text)

    assert getattr(store.effective(), key) == value
    assert PreferenceStore(tmp_path / "prefs.json").local() == {key: value}


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("cpu_percent", "0"),
        ("cpu_percent", "101"),
        ("cpu_percent", "half"),
        ("max_cpus", "-1"),
        ("run_on_batteries", "maybe"),
        ("disk_max_gb", "nan"),
        ("work_buf_hours", "1e9"),
        ("start_hour", "24:00"),
        ("end_hour", "7pm"),
    ],
)
def test_a_bad_value_names_the_preference_and_changes_nothing(tmp_path, key, text):
    store = PreferenceStore(tmp_path / "prefs.json")
    store.set("cpu_percent", "50")

    with pytest.raises(PreferenceError, match=key):
        store.set(key, text)

    assert store.local() == {"cpu_percent": 50}


def test_an_unknown_preference_lists_the_known_ones(tmp_path):
    with pytest.raises(PreferenceError, match="cpu_percent"):
        PreferenceStore(tmp_path / "prefs.json").set("turbo", "yes")


def test_local_settings_beat_the_project_which_beats_the_defaults(tmp_path):
    store = PreferenceStore(tmp_path / "prefs.json")
    store.set("cpu_percent", "60")
    suggested = {"cpu_percent": 20, "work_buf_hours": 4}

    prefs = store.effective(suggested)

    assert (prefs.cpu_percent, prefs.work_buf_hours, prefs.idle_minutes) == (60, 4.0, 3)
    assert store.sources(suggested) == {
        **dict.fromkeys(FIELDS, "default"),
        "cpu_percent": "local",
        "work_buf_hours": "project",
    }


def test_nonsense_from_the_project_is_ignored(tmp_path):
    store = PreferenceStore(tmp_path / "prefs.json")

    prefs = store.effective({"cpu_percent": 1000, "max_cpus": "all", "rm -rf": True, "work_buf_hours": 2})

    assert prefs == Preferences(work_buf_hours=2.0)
    assert store.effective(["not", "a", "dict"]) == Preferences()  # type: ignore[arg-type]


def test_a_damaged_file_is_a_clear_error(tmp_path):
    (tmp_path / "prefs.json").write_text("{cpu_percent: 5")

    with pytest.raises(PreferenceError, match="not valid JSON"):
        PreferenceStore(tmp_path / "prefs.json").effective()


def test_cpus_follow_the_cores():
    assert Preferences().cpus(8) == 8
    assert Preferences(max_cpus=2).cpus(8) == 2
    assert Preferences(max_cpus=16).cpus(8) == 8
