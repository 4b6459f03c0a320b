"""What a bundle's ``tessera-app.json`` may say: a Python app (``main.py``), a WebAssembly
module (docs/science-apps.md, "WebAssembly apps") or a native executable for one platform
(docs/apps.md, "Native apps").

Checked once when a bundle is installed (a refusal names the field), and read again when a task
of a wasm app starts, for the module's memory limit. Plain checks on plain JSON: nothing here
runs or parses the module or the executable itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "tessera-app.json"
API_VERSION = 1
PYTHON, WASM, NATIVE = "python", "wasm", "native"
WASI_VERSIONS = ("preview1",)
WASM_PAGE = 64 * 1024
WASM32_MAX_MEMORY = 4 * 1024**3  # a 32-bit module cannot address more
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative_path(name: str) -> str:
    """A path inside the bundle, '/'-separated; ``ValueError`` for anything that could escape
    or mean something else on another system (drive letters, backslashes, ``..``)."""
    if not name or "\\" in name or ":" in name or name.startswith("/") or _DRIVE.match(name):
        raise ValueError(f"{name!r} is absolute, has a drive letter, a backslash or a colon")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"{name!r} holds control characters")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"{name!r} has an empty, '.' or '..' part")
        if part.endswith((".", " ")):
            raise ValueError(f"{name!r} has a part ending in '.' or a space (ambiguous on Windows)")
    return name


@dataclass(frozen=True)
class AppManifest:
    """An app's manifest, checked: what runs, and for a wasm module, how."""

    entrypoint: str  # a safe relative path inside the bundle
    runtime: str = PYTHON  # PYTHON, WASM or NATIVE
    deterministic: bool = False  # wasm: the output depends on the input alone
    memory_bytes: int = 0  # wasm: the most linear memory the module may grow to

    @property
    def is_wasm(self) -> bool:
        return self.runtime == WASM

    @property
    def is_native(self) -> bool:
        return self.runtime == NATIVE


def runtime_of(entrypoint: Path) -> str:
    """The runtime of a verified app, from its entrypoint's name alone.

    Unambiguous because :func:`parse_manifest` holds each runtime to its own names: ``.py`` for
    Python, ``.wasm`` for WebAssembly, and neither for a native executable.
    """
    suffix = Path(entrypoint).suffix
    return PYTHON if suffix == ".py" else WASM if suffix == ".wasm" else NATIVE


def parse_manifest(data: Any) -> AppManifest:
    """The manifest in ``data`` (parsed JSON); ``ValueError`` naming the field that is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"{MANIFEST} is not a JSON object")
    api = data.get("api")
    if isinstance(api, bool) or api != API_VERSION:
        raise ValueError(f"{MANIFEST} says api {api!r}; this client runs api {API_VERSION}")
    entrypoint = data.get("entrypoint")
    try:
        entrypoint = check_relative_path(entrypoint if isinstance(entrypoint, str) else "")
    except ValueError as error:
        raise ValueError(f"the entrypoint {entrypoint!r} is not a safe path: {error}") from error
    runtime = data.get("runtime", PYTHON)
    if runtime == PYTHON:
        if not entrypoint.endswith(".py"):
            raise ValueError(f"the entrypoint {entrypoint!r} is not a Python file (.py)")
        return AppManifest(entrypoint)
    if runtime == NATIVE:
        if entrypoint.endswith((".py", ".wasm")):
            raise ValueError(
                f"the entrypoint {entrypoint!r} of a native app may not end in .py or .wasm "
                "(those name the other runtimes)"
            )
        return AppManifest(entrypoint, NATIVE)
    if runtime != WASM:
        raise ValueError(
            f"the runtime {runtime!r} is not one this client runs ('python', 'wasm' or 'native')"
        )
    return _wasm_manifest(data, entrypoint)


def _wasm_manifest(data: dict, entrypoint: str) -> AppManifest:
    if not entrypoint.endswith(".wasm"):
        raise ValueError(f"the entrypoint {entrypoint!r} is not a WebAssembly module (.wasm)")
    wasi = data.get("wasi")
    if wasi not in WASI_VERSIONS:
        raise ValueError(f"wasi {wasi!r} is not one this client provides ('preview1')")
    deterministic = data.get("deterministic")
    if not isinstance(deterministic, bool):
        raise ValueError(f"deterministic {deterministic!r} is not true or false")
    memory = data.get("memory_bytes")
    if isinstance(memory, bool) or not isinstance(memory, int):
        raise ValueError(f"memory_bytes {memory!r} is not a whole number of bytes")
    if not WASM_PAGE <= memory <= WASM32_MAX_MEMORY:
        raise ValueError(
            f"memory_bytes {memory} is outside {WASM_PAGE} (one page) to {WASM32_MAX_MEMORY} (4 GiB)"
        )
    return AppManifest(entrypoint, WASM, deterministic, memory)


def installed_manifest(entrypoint: Path) -> tuple[AppManifest, Path]:
    """The manifest of the installed app whose entrypoint is ``entrypoint``, and the app's folder.

    The folder is the nearest one above the entrypoint whose manifest names it; ``ValueError``
    when there is none (the app was changed after it was installed).
    """
    entrypoint = Path(entrypoint)
    for folder in entrypoint.parents:
        try:
            manifest = parse_manifest(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # no manifest here, or a file of the app that happens to bear the name
        if folder / manifest.entrypoint == entrypoint:
            return manifest, folder
    raise ValueError(f"no {MANIFEST} above {entrypoint} names it as the entrypoint")
