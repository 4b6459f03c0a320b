"""What the client tells a project about its computer: platforms, CPU, memory, disk and GPUs.

A project sends a host only app versions it can run (its BOINC platform names, its CPU
features, its GPUs) and learns each host's speed from this description. It is read once per
process and kept: the CPU and GPUs do not change under a running client, and the idle client
must stay light. :func:`refresh` forgets it (after ``tessera benchmark``, say). The parsers are
pure functions of the tools' text, tested on captured outputs; strings are cleaned and capped
(:mod:`tessera_client.host_tools`), GPUs come from :mod:`tessera_client.gpus`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera_client import gpus
from tessera_client.host_tools import MODEL_CHARS, VERSION_CHARS, clean, run_tool

MAX_FEATURES = 256
VENDOR_CHARS = 64
MAX_CPUS = 4096  # the coordinator's bounds on a host's cores and memory
MAX_MEMORY = 1 << 50
_FEATURE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")

# BOINC's platform names, the host's own first, then those it can also run: 32-bit x86 on a
# 64-bit PC, Intel code through Rosetta on Apple silicon, x86-64 emulation on Windows on ARM.
# Not 32-bit ARM on aarch64 Linux: Apple's cores and many recent Arm cores cannot run it, and
# kernels are often built without it, so claiming it would fetch tasks that crash.
PLATFORMS = {
    ("linux", "x86_64"): ["x86_64-pc-linux-gnu", "i686-pc-linux-gnu"],
    ("linux", "i686"): ["i686-pc-linux-gnu"],
    ("linux", "aarch64"): ["aarch64-unknown-linux-gnu"],
    ("linux", "armv7l"): ["arm-unknown-linux-gnueabihf"],
    ("darwin", "x86_64"): ["x86_64-apple-darwin"],
    ("darwin", "arm64"): ["arm64-apple-darwin", "x86_64-apple-darwin"],
    ("win32", "amd64"): ["windows_x86_64", "windows_intelx86"],
    ("win32", "x86"): ["windows_intelx86"],
    ("win32", "arm64"): ["windows_arm64", "windows_x86_64"],
}
MACHINE_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "i386": "i686", "i586": "i686", "arm64": "aarch64"}

ARM_IMPLEMENTERS = {
    0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon", 0x4E: "NVIDIA",
    0x50: "APM", 0x51: "Qualcomm", 0x53: "Samsung", 0x61: "Apple", 0xC0: "Ampere",
}  # fmt: skip
ARM_PARTS = {  # the cores of Raspberry Pis, phones and cloud servers (implementer 0x41)
    0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72",
    0xD09: "Cortex-A73", 0xD0B: "Cortex-A76", 0xD0C: "Neoverse-N1", 0xD40: "Neoverse-V1",
    0xD49: "Neoverse-N2", 0xD4F: "Neoverse-V2",
}  # fmt: skip


def platforms_for(system: str, machine: str) -> list[str]:
    """BOINC platform names for ``sys.platform`` and ``platform.machine()``, the native one
    first. An unknown pair gets one made-up name, so a project can still tell hosts apart."""
    key = machine.lower()
    if system == "linux":
        key = MACHINE_ALIASES.get(key, key).replace("armv8l", "armv7l")
    elif system == "darwin":
        key = "arm64" if key in ("arm64", "aarch64") else key
    elif system == "win32":
        key = {"x86_64": "amd64", "i686": "x86", "i386": "x86", "aarch64": "arm64"}.get(key, key)
    known = PLATFORMS.get((system, key))
    if known:
        return list(known)
    return [re.sub(r"[^A-Za-z0-9_.-]", "_", f"{key or 'unknown'}-{system or 'unknown'}")[:64]]


def platforms() -> list[str]:
    """This computer's BOINC platform names, primary first."""
    return platforms_for(sys.platform, platform.machine())


@dataclass(frozen=True)
class CpuInfo:
    """The processor, as the description names it (cleaned and capped)."""

    vendor: str = ""
    model: str = ""
    family: str = ""  # x86 family number as text; "" elsewhere
    features: tuple[str, ...] = ()


def _features(words: list[str]) -> tuple[str, ...]:
    """Flag names in lower case, each once, at most :data:`MAX_FEATURES` of them."""
    found = dict.fromkeys(w.lower() for w in words if _FEATURE.match(w.lower()))
    return tuple(list(found)[:MAX_FEATURES])


def _cpu(vendor: str, model: str, family: str, features: list[str]) -> CpuInfo:
    return CpuInfo(
        vendor=clean(vendor, VENDOR_CHARS),
        model=clean(model, MODEL_CHARS),
        family=clean(family, VERSION_CHARS),
        features=_features(features),
    )


def _fields(text: str, separator: str) -> dict[str, str]:
    """``key<separator> value`` lines as a dict; the first of a repeated key wins (the first core)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(separator)
        if sep and key.strip():
            found.setdefault(key.strip(), value.strip())
    return found


def _hex(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        return -1


def parse_proc_cpuinfo(text: str) -> CpuInfo:
    """The CPU from Linux's ``/proc/cpuinfo``: x86 (``vendor_id``, ``model name``, ``cpu
    family``, ``flags``) or ARM (``CPU implementer``, ``CPU part``, ``Features``, and
    ``model name`` or ``Hardware`` where the kernel writes them)."""
    fields = _fields(text, ":")
    if "vendor_id" in fields:
        model, family = fields.get("model name", ""), fields.get("cpu family", "")
        return _cpu(fields["vendor_id"], model, family, fields.get("flags", "").split())
    implementer = _hex(fields.get("CPU implementer", ""))
    vendor = ARM_IMPLEMENTERS.get(implementer, fields.get("CPU implementer", ""))
    part = _hex(fields.get("CPU part", ""))
    core = ARM_PARTS.get(part, "") if implementer == 0x41 else ""
    hardware = fields.get("Hardware", "")
    model = fields.get("model name") or fields.get("cpu model") or fields.get("cpu") or ""
    if not model and core:
        model = f"{vendor} {core}" + (f" ({hardware})" if hardware else "")
    if not model:
        model = hardware or (f"{vendor} CPU part {fields['CPU part']}" if "CPU part" in fields else "")
    return _cpu(vendor, model, "", (fields.get("Features") or fields.get("isa") or "").split())


def parse_sysctl(text: str) -> CpuInfo:
    """The CPU from macOS's ``sysctl machdep.cpu hw.optional``: an Intel Mac names its vendor,
    family and feature flags under ``machdep.cpu``; Apple silicon lists ``hw.optional.arm.FEAT_*``
    (written here without the ``FEAT_``: ``dotprod``, ``bf16``)."""
    fields = _fields(text, ": ")
    model = fields.get("machdep.cpu.brand_string", "")
    vendor = fields.get("machdep.cpu.vendor") or ("Apple" if model.startswith("Apple") else "")
    words = " ".join(
        fields.get(f"machdep.cpu.{key}", "") for key in ("features", "leaf7_features", "extfeatures")
    ).split()
    prefix = "hw.optional.arm.FEAT_"
    words += [key[len(prefix) :] for key, value in fields.items() if key.startswith(prefix) and value == "1"]
    return _cpu(vendor, model, fields.get("machdep.cpu.family", ""), words)


def parse_windows_processor(text: str) -> CpuInfo:
    """The CPU from Windows's ``platform.processor()``: "Intel64 Family 6 Model 158 Stepping 10,
    GenuineIntel". Windows names no feature flags this way."""
    described, _, vendor = text.rpartition(",")
    family = re.search(r"\bFamily (\d+)", text)
    return _cpu(vendor, described or text, family.group(1) if family else "", [])


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This computer's CPU (read once per process)."""
    if sys.platform.startswith("linux"):
        try:
            return parse_proc_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace")[: 1 << 20])
        except OSError:
            return CpuInfo()
    if sys.platform == "darwin":
        return parse_sysctl(run_tool(["sysctl", "machdep.cpu", "hw.optional"]) or "")
    if sys.platform == "win32":
        return parse_windows_processor(platform.processor())
    return _cpu("", platform.processor(), "", [])


@functools.lru_cache(maxsize=1)
def gpu_list() -> tuple[gpus.Gpu, ...]:
    """The GPUs (detected once per process: each tool may take a second)."""
    return tuple(gpus.detect())


def refresh() -> None:
    """Forget what was read, so the next description looks at the hardware again."""
    cpu_info.cache_clear()
    gpu_list.cache_clear()


def memory_bytes() -> int:
    """This computer's physical memory in bytes; 0 where it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def bytes_under(folder: Path) -> int:
    """Bytes in the files under ``folder`` (0 when it does not exist)."""
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # removed while we counted
    return total


def disk_free_bytes(folder: Path, limit_bytes: float, used_bytes: int) -> int:
    """Disk the client may still fill: what is free on ``folder``'s disk, but no more than the
    volunteer's limit less what the client already uses; never below 0."""
    allowed = int(limit_bytes) - int(used_bytes)
    existing = Path(folder)
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent  # before `attach` the data folder may not exist yet
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = allowed
    return max(0, min(free, allowed))


def runtimes() -> list[str]:
    """How apps can run here: Python always, WebAssembly when wasmtime is installed (looked up,
    not imported: only a wasm task's own process loads it), native code on POSIX systems."""
    found = ["python"]
    if importlib.util.find_spec("wasmtime") is not None:
        found.append("wasm")
    if os.name == "posix":
        found.append("native")
    return found


def os_version() -> str:
    """The operating system's version: macOS's own number, Windows's build, else the kernel's."""
    if sys.platform == "darwin":
        version = platform.mac_ver()[0] or platform.release()
    elif sys.platform == "win32":
        version = platform.version()
    else:
        version = platform.release()
    return clean(version, VERSION_CHARS)


def describe(
    folder: Path, *, limit_bytes: float, used_bytes: int, use_gpus: bool, native_apps: bool = True
) -> dict[str, Any]:
    """The host description sent at registration and in the scheduler RPC's ``host_info``
    (client/README.md lists the fields). ``folder``: where the client keeps its data;
    ``limit_bytes``, ``used_bytes``: the volunteer's disk limit and what the client uses now.
    With ``use_gpus`` false no GPU is named (and no GPU tool runs); with ``native_apps`` false
    the runtimes leave out native programs."""
    cpu = cpu_info()
    return {
        "platforms": platforms(),
        "os_name": clean(platform.system(), VERSION_CHARS),
        "os_version": os_version(),
        "cpu_vendor": cpu.vendor,
        "cpu_model": cpu.model,
        "cpu_family": cpu.family,
        "cpu_features": list(cpu.features),
        "n_cpus": min(os.cpu_count() or 1, MAX_CPUS),
        "memory_bytes": min(memory_bytes(), MAX_MEMORY),
        "disk_free_bytes": disk_free_bytes(folder, limit_bytes, used_bytes),
        "gpus": [gpu.to_json() for gpu in gpu_list()] if use_gpus else [],
        "use_gpus": bool(use_gpus),
        "runtimes": [kind for kind in runtimes() if native_apps or kind != "native"],
        "python_version": "{}.{}.{}".format(*sys.version_info[:3]),  # never "3.13.0rc1"
    }
