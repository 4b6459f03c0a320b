"""The spectra app's pinned numpy, for tests: the wheel from the cache ``make`` fills, unpacked by
the client's own code (nothing is downloaded here; tests may not reach the internet)."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from workunits.spectra import MANIFEST, NUMPY

CACHE = Path(__file__).resolve().parents[2] / "var" / "wheels"
PLATFORM = "x86_64-pc-linux-gnu"


def wheel_folder() -> Path:
    """The folder holding the pinned numpy wheel (a ``--find-links`` for publish_app), or a skip."""
    folder = CACHE / NUMPY.sha256
    if not (folder / NUMPY.file).is_file():
        pytest.skip(
            f"the pinned numpy wheel is not in {CACHE} (the Makefile's install step fetches it: "
            "`.venv/bin/python -m coordinator.work.wheels`)"
        )
    return folder


def can_run_here() -> None:
    """The pinned wheel runs on this machine's platform and Python, or a skip saying why."""
    python = MANIFEST.python_for(PLATFORM)
    if not sys.platform.startswith("linux") or platform.machine() != "x86_64":
        pytest.skip(f"spectra's numpy wheel is for {PLATFORM}; this is {sys.platform} {platform.machine()}")
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != python:
        pytest.skip(f"spectra's numpy wheel is for Python {python}")


def unpacked_numpy(folder: Path) -> ModuleType:
    """numpy, imported from the pinned wheel unpacked into ``folder/site`` as the client does."""
    can_run_here()
    from tessera_client.wheels import install_wheels

    source = wheel_folder() / NUMPY.file
    app = folder / "app"
    (app / "wheels").mkdir(parents=True)
    shutil.copyfile(source, app / "wheels" / NUMPY.file)
    manifest = {"api": 1, "entrypoint": "main.py", "wheels": [{"file": NUMPY.file, "sha256": NUMPY.sha256}]}
    (app / "tessera-app.json").write_text(json.dumps(manifest))
    install_wheels(app, max_unpacked_bytes=256 * 1024 * 1024, max_entries=10000)
    sys.path.insert(0, str(app / "site"))
    try:
        import numpy
    finally:
        sys.path.remove(str(app / "site"))
    return numpy
