"""The client's data folder: attached projects, their runtime state, names that are safe."""

from __future__ import annotations

import pytest

from tessera_client.protocol import HostKey
from tessera_client.state import DataDir, Project, Runtime, StateError, default_data_dir, project_name_for


def project(name: str = "science.example.org") -> Project:
    return Project(
        name=name, url="https://science.example.org", host_id=7, code_signing_key="k", fingerprint="f"
    )


def test_a_project_and_its_runtime_survive_a_restart(tmp_path):
    data = DataDir(tmp_path).ensure()
    data.save_project(project())
    data.save_runtime("science.example.org", Runtime(credit={"host_total": 3.5}, last_error="down"))

    again = DataDir(tmp_path)

    assert again.projects() == [project()]
    assert again.runtime("science.example.org").credit == {"host_total": 3.5}
    assert again.runtime("science.example.org").last_error == "down"


def test_removing_a_project_removes_its_key_and_runtime(tmp_path):
    data = DataDir(tmp_path).ensure()
    data.save_project(project())
    HostKey.generate().save(data.key_file("science.example.org"))
    data.save_runtime("science.example.org", Runtime())

    data.remove_project("science.example.org")

    assert data.projects() == []
    assert list((tmp_path / "projects").iterdir()) == [] and list((tmp_path / "keys").iterdir()) == []


def test_the_keys_folder_is_private(tmp_path):
    DataDir(tmp_path).ensure()

    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "x" * 65, "name with space"])
def test_unsafe_project_names_are_refused(tmp_path, name):
    with pytest.raises(StateError, match="not a usable project name"):
        DataDir(tmp_path).key_file(name)


def test_asking_for_an_unknown_project_lists_the_attached_ones(tmp_path):
    data = DataDir(tmp_path).ensure()
    data.save_project(project())

    with pytest.raises(StateError, match=r"no project named 'other'.*science\.example\.org"):
        data.project("other")


def test_a_damaged_runtime_file_is_only_a_lost_cache(tmp_path):
    data = DataDir(tmp_path).ensure()
    (tmp_path / "projects" / "p.runtime.json").write_text("{not json")

    assert data.runtime("p") == Runtime()


def test_project_names_come_from_the_address():
    assert project_name_for("https://science.example.org/") == "science.example.org"
    assert project_name_for("http://127.0.0.1:8000") == "127.0.0.1-8000"


def test_the_data_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "tessera"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_data_dir().name == "tessera" and default_data_dir().is_absolute()
