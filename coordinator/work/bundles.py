"""Building app bundles: the zip archive a client verifies, unpacks and runs (docs/apps.md)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from types import ModuleType

import workunits

MANIFEST = "tessera-app.json"
DEMO_APP = Path(__file__).parent / "demo_app"
# Fixed timestamps make a bundle's bytes, and so its hash, depend on its files alone.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
WORKUNITS = Path(workunits.__file__).parent
RUNTIME_FILES = ("__init__.py", "interface.py", "runtime.py")
ENTRYPOINT = '''"""Runs {name} on a volunteer's computer (built by manage.py publish_app)."""

from workunits import {name} as app
from workunits.runtime import main

main(app)
'''


def zip_files(files: dict[str, bytes]) -> bytes:
    """A deterministic zip: sorted names, fixed timestamps and modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()


def _python_files(folder: Path, prefix: str) -> dict[str, bytes]:
    return {
        f"{prefix}{path.relative_to(folder).as_posix()}": path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def build_bundle(folder: Path) -> bytes:
    """A bundle of ``folder`` as it is; it must hold a manifest naming its entrypoint."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("api") != 1 or not (folder / manifest.get("entrypoint", "")).is_file():
        raise ValueError(f"{folder / MANIFEST} must say api 1 and name an entrypoint in {folder}")
    return zip_files(_python_files(folder, ""))


def build_app_bundle(app: ModuleType) -> bytes:
    """The bundle of an app in workunits/: its package, the runtime, and a main.py for it."""
    name = app.MANIFEST.name
    files = {f"workunits/{file}": (WORKUNITS / file).read_bytes() for file in RUNTIME_FILES}
    files.update(_python_files(WORKUNITS / name, f"workunits/{name}/"))
    files["main.py"] = ENTRYPOINT.format(name=name).encode()
    files[MANIFEST] = json.dumps({"api": 1, "entrypoint": "main.py"}).encode()
    return zip_files(files)
