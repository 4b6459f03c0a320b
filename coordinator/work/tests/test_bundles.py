"""Bundles are built reproducibly, from a folder that says how to run it."""

import io
import json
import zipfile

import pytest

from coordinator.work.bundles import DEMO_APP, build_bundle


def test_the_same_folder_always_builds_the_same_bytes(tmp_path):
    first = build_bundle(DEMO_APP)
    (tmp_path / "again").mkdir()
    for path in DEMO_APP.iterdir():
        if path.is_file():
            (tmp_path / "again" / path.name).write_bytes(path.read_bytes())

    assert build_bundle(tmp_path / "again") == first
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names == ["main.py", "tessera-app.json"]


def test_a_folder_without_a_runnable_manifest_is_refused(tmp_path):
    (tmp_path / "tessera-app.json").write_text(json.dumps({"api": 1, "entrypoint": "missing.py"}))

    with pytest.raises(ValueError, match="entrypoint"):
        build_bundle(tmp_path)
