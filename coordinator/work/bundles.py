"""Building app bundles: the zip archive a client verifies, unpacks and runs (docs/apps.md).

A Python app's bundle holds its package, the runtime and a ``main.py``, and its pinned wheels
for one platform under ``wheels/`` when it has some ("Python apps with dependencies"); a wasm
app's holds its module, built from the C source its manifest names, and ``tessera-app.json`` as
docs/science-apps.md says ("WebAssembly apps").
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import wasmtime
from tessera_client import wasm_nan

import workunits
from workunits import wasm_build

MANIFEST = "tessera-app.json"
DEMO_APP = Path(__file__).parent / "demo_app"
# Fixed timestamps make a bundle's bytes, and so its hash, depend on its files alone.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
WORKUNITS = Path(workunits.__file__).parent
WASI_MODULE = "wasi_snapshot_preview1"  # the only module a wasm app may import from (functions)
WASM_PAGE = 65536
RUNTIME_FILES = ("__init__.py", "interface.py", "runtime.py")
ENTRYPOINT = '''"""Runs {name} on a volunteer's computer (built by manage.py publish_app)."""

from workunits import {name} as app
from workunits.runtime import main

main(app)
'''
# An app with wheels: the client unpacked them into ``site/`` beside this file (python -E -s
# ignores PYTHONPATH, so the path is set here), ahead of whatever the volunteer's Python has
# installed, after the app's own folder.
WHEELS_ENTRYPOINT = '''"""Runs {name} on a volunteer's computer (built by manage.py publish_app)."""

import os
import sys

sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "site"))
# A task gets its cores (TESSERA_CORES, else one): BLAS and OpenMP start no more threads.
_threads = os.environ.get("TESSERA_CORES") or "1"
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, _threads)

from workunits import {name} as app  # noqa: E402
from workunits.runtime import main  # noqa: E402

main(app)
'''
WHEELS_FOLDER = "wheels/"


def zip_files(files: dict[str, bytes]) -> bytes:
    """A deterministic zip: sorted names, fixed timestamps and modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            # A wheel is a zip already: deflating it again costs time and saves nothing.
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".whl") else zipfile.ZIP_DEFLATED
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


def check_wasm_module(module: bytes, *, memory_bytes: int) -> None:
    """Refuse a module the client would refuse: an import other than a WASI preview 1
    function (named in the error), a memory that starts larger than ``memory_bytes``, or the
    NaN-guard marker on a module whose guards are not all there."""
    try:
        compiled = wasmtime.Module(wasmtime.Engine(), module)
    except wasmtime.WasmtimeError as error:
        raise ValueError(f"not a WebAssembly module: {error}") from error
    if wasm_nan.is_marked(module) and not wasm_nan.check(module):
        raise ValueError(
            f"the module is marked {wasm_nan.MARKER} but not every float store, reinterpretation "
            "or copysign is guarded; publish it without the marker and it is guarded here"
        )
    for item in compiled.imports:
        if item.module != WASI_MODULE or not isinstance(item.type, wasmtime.FuncType):
            kind = type(item.type).__name__.removesuffix("Type").lower()
            raise ValueError(
                f"the module imports {item.module}.{item.name} ({kind}); "
                f"only functions of {WASI_MODULE} are allowed"
            )
    for export in compiled.exports:
        if isinstance(export.type, wasmtime.MemoryType) and export.type.limits.min * WASM_PAGE > memory_bytes:
            raise ValueError(
                f"the module's memory {export.name} starts at {export.type.limits.min * WASM_PAGE} bytes, "
                f"over the manifest's memory_bytes ({memory_bytes})"
            )


def build_wasm_bundle(app: ModuleType, module: bytes | None = None) -> bytes:
    """A wasm app's bundle: its module (built from its C source unless given; NaN-guarded
    either way when the pass can read it) and the manifest the client reads."""
    manifest = app.MANIFEST
    if module is None:
        module = wasm_build.build_app_module(app)
    elif not wasm_nan.is_marked(module):
        module = wasm_nan.guarded_if_possible(module)
    check_wasm_module(module, memory_bytes=manifest.memory_bytes)
    description = {
        "api": 1,
        "runtime": "wasm",
        "entrypoint": manifest.entrypoint,
        "wasi": "preview1",
        "deterministic": manifest.deterministic,
        "memory_bytes": manifest.memory_bytes,
    }
    return zip_files({MANIFEST: json.dumps(description).encode(), manifest.entrypoint: module})


def build_native_bundle(app: ModuleType, platform: str) -> bytes:
    """A native app version of a wasm app for ``platform``: its C source cross-compiled
    (``wasm_build.build_native_app``) and a manifest naming the executable (docs/apps.md)."""
    entrypoint = wasm_build.native_entrypoint(app, platform)
    description = {"api": 1, "runtime": "native", "entrypoint": entrypoint}
    binary = wasm_build.build_native_app(app, platform)
    return zip_files({MANIFEST: json.dumps(description).encode(), entrypoint: binary})


def build_app_bundle(
    app: ModuleType, wheels: Mapping[str, bytes] | None = None, *, python: str = ""
) -> bytes:
    """The bundle of an app in workunits/: its package, the runtime, and a main.py for it;
    for a wasm app, its module.

    ``wheels`` (file name -> bytes, already checked against their pins: ``work.wheels``) go
    under ``wheels/`` and into the manifest with their SHA-256, and ``python`` ("3.11") names
    the interpreter they are built for, so that a client with another one refuses the bundle.
    """
    if app.MANIFEST.runtime == "wasm":
        return build_wasm_bundle(app)
    name = app.MANIFEST.name
    files = {f"workunits/{file}": (WORKUNITS / file).read_bytes() for file in RUNTIME_FILES}
    files.update(_python_files(WORKUNITS / name, f"workunits/{name}/"))
    description: dict[str, object] = {"api": 1, "entrypoint": "main.py"}
    if wheels:
        files["main.py"] = WHEELS_ENTRYPOINT.format(name=name).encode()
        files.update({f"{WHEELS_FOLDER}{file}": data for file, data in wheels.items()})
        description["wheels"] = [
            {"file": file, "sha256": hashlib.sha256(data).hexdigest()}
            for file, data in sorted(wheels.items())
        ]
        if python:
            description["python"] = python
    else:
        files["main.py"] = ENTRYPOINT.format(name=name).encode()
    files[MANIFEST] = json.dumps(description).encode()
    return zip_files(files)
