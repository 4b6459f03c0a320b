"""This computer's GPUs, as the vendors' own tools report them.

NVIDIA cards come from ``nvidia-smi`` (with their CUDA compute capability), AMD, Intel and other
OpenCL devices from ``clinfo --raw`` (the machine-readable form: one ``[PLATFORM/DEVICE] KEY
VALUE`` line per property, stable across clinfo versions, unlike the human layout), and a Mac's
GPUs from ``system_profiler SPDisplaysDataType -json``. Each parser is a pure function of the
tool's text, so it is tested on captured outputs; :func:`detect` runs the tools. Identical cards
are one entry with a count, which is how a project matches work to them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from tessera_client.host_tools import MODEL_CHARS, VERSION_CHARS, clean, run_tool

MiB = 1 << 20
MAX_KINDS = 8  # the coordinator takes this many kinds of GPU per host,
MAX_COUNT = 64  # this many of one kind,
MAX_MEMORY = 1 << 45  # and this much memory on one
NVIDIA_FIELDS = ("name", "memory.total", "driver_version", "compute_cap", "count")
NVIDIA_FIELDS_OLD = ("name", "memory.total", "driver_version", "count")  # drivers before compute_cap
OPENCL_VENDOR_IDS = {0x10DE: "nvidia", 0x1002: "amd", 0x1022: "amd", 0x8086: "intel", 0x106B: "apple"}
_DEVICE_LINE = re.compile(r"^\[(?P<platform>[^\]/]*)/(?P<device>[^\]]*)\]\s+(?P<key>\S+)\s?(?P<value>.*)$")
_OPENCL_VERSION = re.compile(r"OpenCL\s+(\d+\.\d+)")
_CAPABILITY = re.compile(r"^\d{1,2}\.\d{1,2}$")
_DRIVER = re.compile(r"^\d{1,4}(\.\d{1,4}){0,3}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]B)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Gpu:
    """One kind of GPU in this computer; ``count`` of them."""

    vendor: str  # "nvidia" | "amd" | "intel" | "apple" | "other"
    api: str  # "cuda" | "opencl" | "metal"
    model: str
    memory_bytes: int = 0
    driver_version: str = ""
    compute_capability: str = ""  # CUDA only, e.g. "8.6"
    opencl_version: str = ""  # OpenCL only, e.g. "3.0"
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        """The GPU as the host description lists it, within the coordinator's bounds."""
        return {
            **asdict(self),
            "memory_bytes": min(self.memory_bytes, MAX_MEMORY),
            "count": min(self.count, MAX_COUNT),
        }


def vendor_of(text: str) -> str:
    """The vendor named in a device's vendor or model string."""
    lower = text.lower()
    for word, vendor in (
        ("nvidia", "nvidia"),
        ("advanced micro devices", "amd"),
        ("amd", "amd"),
        ("radeon", "amd"),
        ("intel", "intel"),
        ("apple", "apple"),
    ):
        if word in lower:
            return vendor
    return "other"


def _whole(text: str) -> int:
    """A non-negative whole number from tool output; 0 for "[N/A]", "[Not Supported]" and the like."""
    try:
        return max(0, int(float(text.strip())))
    except (ValueError, OverflowError):
        return 0


# -- nvidia-smi ---------------------------------------------------------------------------------


def parse_nvidia_smi(text: str, fields: Sequence[str] = NVIDIA_FIELDS) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits``: one line per
    GPU, values in ``fields`` order, memory in MiB. Lines of any other shape (an error message
    from an old driver, say) are skipped."""
    found = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        values = dict(zip(fields, parts))
        if len(parts) != len(fields) or not values.get("name") or not _is_gpu_line(values):
            continue
        capability = values.get("compute_cap", "")
        found.append(
            Gpu(
                vendor="nvidia",
                api="cuda",
                model=clean(values["name"], MODEL_CHARS),
                memory_bytes=_whole(values.get("memory.total", "")) * MiB,
                driver_version=clean(values.get("driver_version", ""), VERSION_CHARS),
                compute_capability=capability if _CAPABILITY.match(capability) else "",
            )
        )
    return found


def _is_gpu_line(values: dict[str, str]) -> bool:
    """The numbers nvidia-smi always prints are numbers: a line of garbage is no GPU."""
    return values.get("memory.total", "").isdigit() and bool(_DRIVER.match(values.get("driver_version", "")))


def nvidia_gpus() -> list[Gpu]:
    """Run ``nvidia-smi``; older drivers (470, say) do not know ``compute_cap``: ask again without."""
    for fields in (NVIDIA_FIELDS, NVIDIA_FIELDS_OLD):
        text = run_tool(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"])
        if text is not None:
            return parse_nvidia_smi(text, fields)
    return []


# -- clinfo ---------------------------------------------------------------------------------------


def _opencl_devices(text: str) -> list[dict[str, str]]:
    """Each device's properties from ``clinfo --raw``. A device's lines come together, so a new
    ``CL_DEVICE_NAME`` starts the next device (two platforms may share an ICD suffix)."""
    devices: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        match = _DEVICE_LINE.match(line)
        if match is None or match["device"] == "*":
            continue
        key, value = match["key"], match["value"].strip()
        if key == "CL_DEVICE_NAME" or current is None:
            current = {}
            devices.append(current)
        current.setdefault(key, value)
    return devices


def _opencl_vendor(device: dict[str, str]) -> str:
    try:
        vendor_id = int(device.get("CL_DEVICE_VENDOR_ID", ""), 16)
    except ValueError:
        vendor_id = -1
    return OPENCL_VENDOR_IDS.get(vendor_id) or vendor_of(device.get("CL_DEVICE_VENDOR", ""))


def parse_clinfo_raw(text: str) -> list[Gpu]:
    """The GPUs among the OpenCL devices of ``clinfo --raw``; CPUs and accelerators are left out.
    An AMD card's name is its board name ("AMD Radeon RX 6800 XT"), not its chip ("gfx1030")."""
    found = []
    for device in _opencl_devices(text):
        if "CL_DEVICE_TYPE_GPU" not in device.get("CL_DEVICE_TYPE", ""):
            continue
        name = device.get("CL_DEVICE_BOARD_NAME_AMD") or device.get("CL_DEVICE_NAME", "")
        version = _OPENCL_VERSION.search(device.get("CL_DEVICE_VERSION", ""))
        found.append(
            Gpu(
                vendor=_opencl_vendor(device),
                api="opencl",
                model=clean(name, MODEL_CHARS),
                memory_bytes=_whole(device.get("CL_DEVICE_GLOBAL_MEM_SIZE", "")),
                driver_version=clean(device.get("CL_DRIVER_VERSION", ""), VERSION_CHARS),
                opencl_version=clean(version.group(1), VERSION_CHARS) if version else "",
            )
        )
    return [gpu for gpu in found if gpu.model]


# -- system_profiler ------------------------------------------------------------------------------


def _size_bytes(text: Any) -> int:
    """ "8 GB" or "1536 MB", as system_profiler writes a card's memory, in bytes."""
    match = _SIZE.match(str(text or ""))
    if match is None:
        return 0
    power = "KMGT".index(match.group(2)[0].upper()) + 1
    return int(float(match.group(1)) * 1024**power)


def parse_system_profiler(text: str) -> list[Gpu]:
    """A Mac's GPUs from ``system_profiler SPDisplaysDataType -json``; all run Metal. Apple
    silicon shares the computer's memory, so its GPU reports none of its own (0)."""
    try:
        entries = json.loads(text).get("SPDisplaysDataType")
    except (ValueError, AttributeError):
        return []
    found = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        model = clean(entry.get("sppci_model") or entry.get("_name") or "", MODEL_CHARS)
        vendor = str(entry.get("spdisplays_vendor", "")).replace("sppci_vendor_", "")
        if model:
            found.append(
                Gpu(
                    vendor=vendor_of(f"{vendor} {model}"),
                    api="metal",
                    model=model,
                    memory_bytes=_size_bytes(entry.get("spdisplays_vram")),
                )
            )
    return found


# -- all of them ----------------------------------------------------------------------------------


def merge(gpus: Iterable[Gpu]) -> list[Gpu]:
    """Identical GPUs as one entry with their count, in the order first seen; at most
    :data:`MAX_KINDS` kinds."""
    counts: dict[Gpu, int] = {}
    for gpu in gpus:
        key = replace(gpu, count=1)
        counts[key] = counts.get(key, 0) + gpu.count
    return [replace(gpu, count=count) for gpu, count in counts.items()][:MAX_KINDS]


def detect() -> list[Gpu]:
    """Every GPU the vendors' tools find. An NVIDIA card that ``nvidia-smi`` reported is not
    counted again from its OpenCL driver."""
    cuda = nvidia_gpus()
    opencl = parse_clinfo_raw(run_tool(["clinfo", "--raw"]) or "")
    if cuda:
        opencl = [gpu for gpu in opencl if gpu.vendor != "nvidia"]
    metal = parse_system_profiler(run_tool(["system_profiler", "SPDisplaysDataType", "-json"]) or "")
    return merge([*cuda, *opencl, *metal])
