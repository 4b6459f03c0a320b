"""Building app bundles: the zip archive a client verifies, unpacks and runs (docs/apps.md)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

MANIFEST = "tessera-app.json"
DEMO_APP = Path(__file__).parent / "demo_app"
# Fixed timestamps make a bundle's bytes, and so its hash, depend on its files alone.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def build_bundle(folder: Path) -> bytes:
    """A deterministic zip of ``folder``, which must hold a manifest naming its entrypoint."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("api") != 1 or not (folder / manifest.get("entrypoint", "")).is_file():
        raise ValueError(f"{folder / MANIFEST} must say api 1 and name an entrypoint in {folder}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()
