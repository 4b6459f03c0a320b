"""Plan classes: can this host run this app version, on what, and how fast? (BOINC's
``sched/plan_class_spec.cpp``.) Pure: plain values in, a usage or a refusal out.

A plan class is data (``work.models.PlanClass``, edited in the admin) describing what a
version needs and what it uses: ``cpu`` one core; ``mt`` several cores (min to max, as many as
the host has within them); a GPU class a GPU of a vendor and API (CUDA, OpenCL), with enough
memory, a recent enough driver or compute capability, plus a fraction of a core to feed it.
The host's side is what its client reported (``HostResources``), which a cheater may invent:
nothing here trusts it beyond choosing what to send, and a host that claims what it lacks
only earns errors (docs/platforms.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

CPU, MT, GPU = "cpu", "mt", "gpu"
KINDS = (CPU, MT, GPU)
MT_EFFICIENCY = 0.9  # a multithreaded version's projected speed per core it gets
_NUMBERS = re.compile(r"\d+")


@dataclass(frozen=True)
class Gpu:
    """One kind of GPU a host has (``count`` of them)."""

    vendor: str  # nvidia, amd, intel, apple, other
    api: str  # cuda, opencl, metal
    model: str = ""
    count: int = 1
    memory_bytes: int = 0
    driver_version: str = ""
    compute_capability: str = ""  # CUDA only, "8.6"
    opencl_version: str = ""


@dataclass(frozen=True)
class HostResources:
    """What a host said about itself, as the scheduler uses it."""

    platforms: tuple[str, ...]
    n_cpus: int
    memory_bytes: int
    flops: float  # per core
    disk_free_bytes: int | None = None  # None: not reported (an older client)
    cpu_features: frozenset[str] = frozenset()
    gpus: tuple[Gpu, ...] = ()
    use_gpus: bool = True
    runtimes: frozenset[str] = frozenset({"python"})
    python_version: str = ""
    os_name: str = ""
    cpu_vendor: str = ""
    cpu_family: str = ""
    cpu_model: str = ""


@dataclass(frozen=True)
class Spec:
    """A plan class's rules (one row of ``work.models.PlanClass``)."""

    name: str
    kind: str = CPU
    min_cores: int = 1
    max_cores: int = 1
    cpu_features: frozenset[str] = frozenset()
    gpu_vendor: str = ""  # "" any vendor
    gpu_api: str = ""  # cuda, opencl
    min_gpu_memory_bytes: int = 0
    min_driver_version: str = ""
    min_compute_capability: str = ""
    gpu_speedup: float = 1.0  # projected speed against one CPU core, until measured
    cpu_per_gpu_task: float = 0.5


@dataclass(frozen=True)
class Usage:
    """What one task of the version takes on this host, and how fast it should run."""

    cores: float
    gpu: Gpu | None = None
    projected_flops: float = 0.0


@dataclass(frozen=True)
class Refusal:
    """Why the host cannot run the version, in a volunteer's words."""

    reason: str


@dataclass(frozen=True)
class VersionNeeds:
    """An app version's own requirements, beside its plan class."""

    platform: str  # a BOINC platform name, or "any"
    runtime: str  # python, wasm, native
    python: str = ""  # "3.11" when its wheels are for one interpreter
    beta: bool = False


def version_key(text: str) -> tuple[int, ...]:
    """ "535.104.05" -> (535, 104, 5): versions compare number by number."""
    return tuple(int(part) for part in _NUMBERS.findall(text))


def at_least(found: str, needed: str) -> bool:
    return not needed or (bool(found) and version_key(found) >= version_key(needed))


def compatible(needs: VersionNeeds, host: HostResources, *, beta_ok: bool) -> Refusal | None:
    """The version's platform, runtime, interpreter and beta flag against the host's."""
    if needs.beta and not beta_ok:
        return Refusal("beta versions only go to volunteers who asked for beta work")
    if needs.runtime not in host.runtimes:
        return Refusal(f"this client cannot run {needs.runtime} apps")
    if needs.platform != "any" and needs.platform not in host.platforms:
        return Refusal(f"no version for your platform ({', '.join(host.platforms) or 'unknown'})")
    if needs.python and version_key(host.python_version)[:2] != version_key(needs.python)[:2]:
        return Refusal(f"this version needs Python {needs.python}")
    return None


def usage(spec: Spec, host: HostResources) -> Usage | Refusal:
    """What a task of a version of plan class ``spec`` uses on ``host``, or why it cannot run."""
    missing = sorted(spec.cpu_features - host.cpu_features)
    if missing:
        return Refusal(f"{spec.name} needs the CPU features {', '.join(missing)}")
    speed = max(host.flops, 0.0)
    if spec.kind == CPU:
        return Usage(cores=1.0, projected_flops=speed)
    if spec.kind == MT:
        if host.n_cpus < spec.min_cores:
            return Refusal(f"{spec.name} needs {spec.min_cores} cores; this computer has {host.n_cpus}")
        cores = min(spec.max_cores, host.n_cpus)
        return Usage(cores=float(cores), projected_flops=speed * cores * MT_EFFICIENCY)
    return _gpu_usage(spec, host, speed)


def _gpu_usage(spec: Spec, host: HostResources, speed: float) -> Usage | Refusal:
    if not host.use_gpus:
        return Refusal("you asked not to use GPUs")
    reasons: list[str] = []
    for gpu in host.gpus:
        why = _gpu_refusal(spec, gpu)
        if why is None:
            return Usage(cores=spec.cpu_per_gpu_task, gpu=gpu, projected_flops=speed * spec.gpu_speedup)
        reasons.append(why)
    if not reasons:
        return Refusal(f"{spec.name} needs a GPU; none was found")
    return Refusal(f"{spec.name}: {'; '.join(reasons)}")


def _gpu_refusal(spec: Spec, gpu: Gpu) -> str | None:
    if gpu.count < 1:
        return f"{gpu.model or gpu.vendor}: none usable"
    if spec.gpu_vendor and gpu.vendor != spec.gpu_vendor:
        return f"{gpu.model or gpu.vendor} is not {spec.gpu_vendor}"
    if spec.gpu_api and gpu.api != spec.gpu_api and not (spec.gpu_api == "opencl" and gpu.opencl_version):
        return f"{gpu.model or gpu.vendor} has no {spec.gpu_api}"
    if gpu.memory_bytes < spec.min_gpu_memory_bytes:
        mib, needed = gpu.memory_bytes >> 20, spec.min_gpu_memory_bytes >> 20
        return f"{gpu.model or gpu.vendor} has {mib} MiB of memory, under {needed}"
    if not at_least(gpu.driver_version, spec.min_driver_version):
        return f"driver {gpu.driver_version or 'unknown'} is older than {spec.min_driver_version}"
    if not at_least(gpu.compute_capability, spec.min_compute_capability):
        return f"compute capability {gpu.compute_capability or 'unknown'} under {spec.min_compute_capability}"
    return None


def gpu_count(host: HostResources) -> int:
    """GPUs the host may be given work for (none when it asked not to use them)."""
    return sum(max(0, gpu.count) for gpu in host.gpus) if host.use_gpus else 0


def hr_class(host: HostResources, level: int) -> str:
    """The host's homogeneous-redundancy class (BOINC's ``sched/hr.cpp``): 1, coarse, the
    operating system and CPU vendor; 2, fine, also the CPU family and model. Replicas of one
    unit of an HR app go only to hosts of one class; "" for level 0."""
    if level <= 0:
        return ""
    parts = [_known(host.os_name, HR_SYSTEMS), _known(host.cpu_vendor, HR_VENDORS)]
    if level >= 2:
        parts += [host.cpu_family or "?", host.cpu_model or "?"]
    return f"{level}:" + "/".join(part.replace("/", "_") for part in parts)[:120]


# The coarse HR vocabulary (BOINC's ``sched/hr.cpp`` has a fixed list too): a host's own
# spelling is mapped onto one of these, and anything else is "other", so the coarse classes
# stay few and a made-up vendor does not make a class of its own.
HR_SYSTEMS = {
    "linux": "Linux",
    "windows": "Windows",
    "darwin": "Darwin",
    "mac": "Darwin",
    "freebsd": "FreeBSD",
}
HR_VENDORS = {
    "genuineintel": "GenuineIntel",
    "intel": "GenuineIntel",
    "authenticamd": "AuthenticAMD",
    "amd": "AuthenticAMD",
    "apple": "Apple",
    "qualcomm": "Qualcomm",
    "ampere": "Ampere",
    "arm": "ARM",
}


def _known(value: str, vocabulary: dict[str, str]) -> str:
    """The vocabulary's name for the first of its words that ``value`` contains, else "other"."""
    lowered = value.lower()
    return next((name for word, name in vocabulary.items() if word in lowered), "other")


def features(names: Iterable[str]) -> frozenset[str]:
    return frozenset(name.strip().lower() for name in names if name.strip())


GIB = 1024**3
# The plan classes every project has (docs/platforms.md); a PlanClass row of the same name
# (the admin shows these four from the start) overrides one, and admins add their own.
STANDARD = {
    spec.name: spec
    for spec in (
        Spec("cpu"),
        Spec("mt", MT, min_cores=2, max_cores=16),
        Spec(
            "cuda",
            GPU,
            gpu_vendor="nvidia",
            gpu_api="cuda",
            min_gpu_memory_bytes=2 * GIB,
            min_driver_version="525",
            min_compute_capability="5.0",
            gpu_speedup=20.0,
        ),
        Spec("opencl", GPU, gpu_api="opencl", min_gpu_memory_bytes=GIB, gpu_speedup=10.0),
    )
}
