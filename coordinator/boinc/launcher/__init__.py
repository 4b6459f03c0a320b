"""Building ``tessera_launcher``, the small C program a stock BOINC client runs as a Tessera app
version's main program (docs/boinc.md).

Debian ships no BOINC ``wrapper``, and a plain app ignores the client's suspend, quit and abort
messages and reports no CPU time. The launcher speaks that part of BOINC's app API and runs the
real app under the Tessera app contract.

Linux builds are static (musl), so one binary runs on any distribution. They are
cross-compiled by the clang inside PyPI's ``ziglang``, the same way ``workunits.wasm_build``
builds native app versions. With no target, the system's gcc builds for this computer (the
tests). Builds are cached under ``var/boinc-launcher/``, keyed by the source, the flags and the
compiler. No Django here: the packaging code and the tests both call it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("tessera_launcher.c")
CACHE = Path(__file__).resolve().parents[3] / "var" / "boinc-launcher"
BUILD_TIMEOUT_S = 600

# BOINC platform name -> zig's target. No Windows: the launcher is POSIX (fork, signals, mmap).
LAUNCHER_TARGETS = {
    "x86_64-pc-linux-gnu": "x86_64-linux-musl",
    "aarch64-unknown-linux-gnu": "aarch64-linux-musl",
    "x86_64-apple-darwin": "x86_64-macos",
    "arm64-apple-darwin": "aarch64-macos",
}
# gcc builds for the tests, so any new warning fails them. zig builds for shipping leave out
# -Werror, so that a newer compiler's new warnings cannot block a release. Both are stripped
# (-s): no symbols and no paths of this machine in the binary.
GCC_FLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE")
ZIG_FLAGS = ("-O2", "-std=c11", "-D_GNU_SOURCE", "-s")


class LauncherBuildError(RuntimeError):
    """The compiler is missing or refused the source (its messages are in the text)."""


def _command(target: str | None) -> tuple[list[str], str]:
    """The compiler command, without its output and source, and the compiler's identity for the
    cache key."""
    if target is None:
        gcc = shutil.which("gcc")
        if gcc is None:
            raise LauncherBuildError("no gcc on PATH (Debian: apt-get install gcc)")
        version = subprocess.run(
            [gcc, "--version"], capture_output=True, text=True, check=False, timeout=60
        ).stdout
        return [gcc, *GCC_FLAGS], version.splitlines()[0] if version else gcc
    zig_target = LAUNCHER_TARGETS.get(target, target if target in LAUNCHER_TARGETS.values() else None)
    if zig_target is None:
        raise LauncherBuildError(f"no launcher target for {target}; known: {', '.join(LAUNCHER_TARGETS)}")
    try:
        version = metadata.version("ziglang")
    except metadata.PackageNotFoundError as error:
        raise LauncherBuildError("ziglang is not installed: pip install -r requirements.txt") from error
    return [sys.executable, "-m", "ziglang", "cc", "-target", zig_target, *ZIG_FLAGS], f"ziglang {version}"


def cache_key(source: bytes, command: list[str], compiler: str) -> str:
    """What decides the binary: the source, the compiler and its arguments (the target among
    them), but not where the compiler or Python lives (``command[0]``)."""
    digest = hashlib.sha256()
    for part in (compiler.encode(), " ".join(command[1:]).encode(), source):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def build(target: str | None, output: Path, *, cache: Path | None = CACHE) -> Path:
    """Compile the launcher into ``output`` (made executable) and return that path.

    ``target``: a BOINC platform name from ``LAUNCHER_TARGETS`` (or its zig target), built by
    zig; None builds for this computer with gcc. ``cache=None`` always compiles.
    """
    command, compiler = _command(target)
    data = SOURCE.read_bytes()
    if cache is None:
        return _write(output, _compile(command, data))
    cached = Path(cache) / cache_key(data, command, compiler)
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary_file = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        temporary_file.write_bytes(_compile(command, data))
        os.replace(temporary_file, cached)
    return _write(output, cached.read_bytes())


def _compile(command: list[str], source: bytes) -> bytes:
    # A fresh folder holding only the source, under its own name: the same bytes each time.
    with tempfile.TemporaryDirectory(prefix="tessera-launcher-") as temporary:
        folder = Path(temporary)
        (folder / SOURCE.name).write_bytes(source)
        done = subprocess.run(
            [*command, "-o", "tessera_launcher", SOURCE.name],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise LauncherBuildError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
        return (folder / "tessera_launcher").read_bytes()


def _write(output: Path, data: bytes) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    output.chmod(0o755)
    return output
