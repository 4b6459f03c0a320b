"""Building a WebAssembly app's module from its C source, reproducibly (docs/science-apps.md).

The module is compiled by the clang inside PyPI's ``ziglang`` (pinned in requirements.txt) for
``wasm32-wasi``, optimized, stripped, without floating-point contraction, in a fresh folder
where the source is the only file, under its own name: no path of the building machine gets
into the module, so the same source always gives the same bytes (and SHA-256). The first
build also builds wasi-libc (about 40 s); zig keeps it in its global cache, and the modules
are cached under ``var/wasm/``, keyed by the source, the flags and the compiler's version.
Each module comes out with its NaN guards (``tessera_client.wasm_nan``), so the client can
leave wasmtime's slower NaN canonicalization off for it; the guards are part of its hash.

``build_native`` compiles the same source with the system's gcc, for comparing speeds: the
binary takes the slot's folder as its argument and follows the same contract.

No Django here: the coordinator publishes with it, and the tests build with it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from types import ModuleType

from tessera_client import wasm_nan

# No -ffast-math, and no fused multiply-adds: every machine computes the same bits.
PORTABLE_FLAGS = ("-O2", "-std=c11", "-ffp-contract=off", "-fno-math-errno")
# Stripped (no debug info, no paths); a 1 MiB stack instead of zig's 16 MiB keeps the module's
# initial memory small (its heap grows within the manifest's memory_bytes).
WASM_FLAGS = ("-target", "wasm32-wasi", *PORTABLE_FLAGS, "-s", "-Wl,-z,stack-size=1048576")
NATIVE_FLAGS = PORTABLE_FLAGS  # and no -lm: the kernel uses no libm function
CACHE = Path(__file__).resolve().parent.parent / "var" / "wasm"
EXIT_CHECKPOINT = 75  # "I wrote my checkpoint, run me again"
BUILD_TIMEOUT_S = 600


class WasmBuildError(RuntimeError):
    """The compiler refused the source (its messages are in the text)."""


def compiler_version() -> str:
    try:
        return metadata.version("ziglang")
    except metadata.PackageNotFoundError as error:
        raise WasmBuildError("ziglang is not installed: pip install -r requirements.txt") from error


def cache_key(source: bytes, flags: tuple[str, ...] = WASM_FLAGS) -> str:
    """What decides the module's bytes: the source, the flags, the compiler and the NaN guards."""
    digest = hashlib.sha256()
    guards = Path(wasm_nan.__file__).read_bytes()  # the pass itself: any change to it rebuilds
    for part in (compiler_version().encode(), " ".join(flags).encode(), guards, source):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _compile(command: list[str], folder: Path) -> None:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0:
        raise WasmBuildError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")


def compile_wasm(source: bytes, name: str, *, nan_guards: bool = True) -> bytes:
    """The module of one C source, compiled afresh (``name``: the source's file name) and
    NaN-guarded where the pass can read it (``nan_guards=False``: as the compiler made it)."""
    with tempfile.TemporaryDirectory(prefix="tessera-wasm-") as temporary:
        folder = Path(temporary)
        (folder / name).write_bytes(source)
        output = Path(name).with_suffix(".wasm").name
        _compile([sys.executable, "-m", "ziglang", "cc", *WASM_FLAGS, "-o", output, name], folder)
        module = (folder / output).read_bytes()
        return wasm_nan.guarded_if_possible(module) if nan_guards else module


def build_wasm(source: Path, *, cache: Path | None = CACHE) -> bytes:
    """The module of ``source``, from the cache when it was built before (``cache=None``:
    always compile)."""
    data = Path(source).read_bytes()
    if cache is None:
        return compile_wasm(data, Path(source).name)
    cached = Path(cache) / f"{cache_key(data)}.wasm"
    if cached.is_file():
        return cached.read_bytes()
    module = compile_wasm(data, Path(source).name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    temporary.write_bytes(module)
    os.replace(temporary, cached)
    return module


def app_source(app: ModuleType) -> Path:
    """The C source a wasm app's manifest names, inside its package."""
    return Path(app.__file__ or "").parent / app.MANIFEST.wasm_source


def build_app_module(app: ModuleType, *, cache: Path | None = CACHE) -> bytes:
    """A wasm app's module, built from its package's C source."""
    if app.MANIFEST.runtime != "wasm":
        raise ValueError(f"{app.MANIFEST.name} is not a wasm app")
    return build_wasm(app_source(app), cache=cache)


# Where zig's clang compiles a native app version for each BOINC platform: Linux binaries are
# static (musl), so they run on any distribution; one source, every platform, from this machine.
NATIVE_TARGETS = {
    "x86_64-pc-linux-gnu": "x86_64-linux-musl",
    "aarch64-unknown-linux-gnu": "aarch64-linux-musl",
    "x86_64-apple-darwin": "x86_64-macos",
    "arm64-apple-darwin": "aarch64-macos",
    "windows_x86_64": "x86_64-windows-gnu",
}
NATIVE_APP_FLAGS = (*PORTABLE_FLAGS, "-DTESSERA_NATIVE_APP", "-s")


def native_entrypoint(app: ModuleType, platform: str) -> str:
    """The executable's path in a native app version's bundle."""
    return f"bin/{app.MANIFEST.name}" + (".exe" if platform.startswith("windows") else "")


def build_native_app(app: ModuleType, platform: str, *, cache: Path | None = CACHE) -> bytes:
    """A wasm app's C source as a native executable for a BOINC ``platform`` (a native app
    version: it keeps running after its checkpoints), cross-compiled by zig, cached like the
    modules."""
    target = NATIVE_TARGETS.get(platform)
    if target is None:
        raise WasmBuildError(f"no native target for {platform}; known: {', '.join(NATIVE_TARGETS)}")
    source = app_source(app)
    data = source.read_bytes()
    flags = ("-target", target, *NATIVE_APP_FLAGS)
    cached = Path(cache) / f"{cache_key(data, flags)}.bin" if cache is not None else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="tessera-native-") as temporary:
        folder = Path(temporary)
        (folder / source.name).write_bytes(data)
        _compile([sys.executable, "-m", "ziglang", "cc", *flags, "-o", "app", source.name], folder)
        binary = next(path for path in folder.iterdir() if path.name.startswith("app"))
        built = binary.read_bytes()
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary_file = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        temporary_file.write_bytes(built)
        os.replace(temporary_file, cached)
    return built


def build_native(source: Path, binary: Path, *, compiler: str = "gcc") -> Path:
    """The same source as a native program (``binary``), for comparing speeds."""
    source, binary = Path(source).resolve(), Path(binary).resolve()
    binary.parent.mkdir(parents=True, exist_ok=True)
    _compile([compiler, *NATIVE_FLAGS, "-o", str(binary), source.name], source.parent)
    return binary


def run_native(binary: Path, slot: Path, *, max_runs: int = 1_000_000) -> tuple[int, int]:
    """Run a native build on a slot folder (``input`` in it) as the client runs a module:
    again while it exits with 75. Returns (its last exit code, the number of runs)."""
    for runs in range(1, max_runs + 1):
        code = subprocess.run([str(binary), str(slot)], check=False).returncode
        if code != EXIT_CHECKPOINT:
            return code, runs
    raise RuntimeError(f"{binary} still wanted to go on after {max_runs} runs")
