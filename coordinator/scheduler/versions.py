"""Which app version a host gets for each app (BOINC's ``sched/sched_version.cpp``).

For every app, the versions this host can run (platform, runtime, interpreter, beta opt-in and
plan class, ``work.plan_classes``) compete on speed: the speed the host has measured on a
version once it has a few results there (``HostAppVersion.speed_flops``, BOINC's
host_app_version), else the plan class's projection from its benchmark. A little
exploration sends a not-yet-measured version now and then, so a new version gets measured.
``choose`` is pure; ``usable_versions`` reads what it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from coordinator.accounts.models import Host
from coordinator.work import plan_classes
from coordinator.work.models import AppVersion
from coordinator.work.plan_classes import HostResources, Refusal, Spec, Usage, VersionNeeds
from coordinator.work.selectors import live_versions, plan_specs

MIN_SPEED_SAMPLES = 3  # results on a version before its measured speed replaces the projection
EXPLORE_PROBABILITY = 0.1  # how often an unmeasured version is tried (VERSION_EXPLORE_PROBABILITY)
DEFAULT_FLOPS = 1e9  # assumed speed per core of a host that has not measured itself
# What a client that does not say (one from before platforms) can run: every client since
# WebAssembly apps installs wasmtime; native executables need a client that says so.
UNDECLARED_RUNTIMES = ("python", "wasm")


@dataclass(frozen=True)
class Option:
    """One version a host can run, and what the scheduler knows of its speed there."""

    version_id: int
    usage: Usage
    measured_flops: float = 0.0
    samples: int = 0

    @property
    def measured(self) -> bool:
        return self.samples >= MIN_SPEED_SAMPLES and self.measured_flops > 0

    @property
    def speed(self) -> float:
        """Floating-point operations per second one task of it should do on this host."""
        return self.measured_flops if self.measured else self.usage.projected_flops


@dataclass(frozen=True)
class Chosen:
    version: AppVersion
    usage: Usage
    speed: float


def choose(options: list[Option], draw: float, explore: float = EXPLORE_PROBABILITY) -> Option | None:
    """The fastest option; with probability ``explore`` (``draw`` below it) the least
    measured one instead, while some option is not measured yet."""
    if not options:
        return None
    unmeasured = [option for option in options if not option.measured]
    if unmeasured and draw < explore:
        return min(unmeasured, key=lambda option: (option.samples, -option.usage.projected_flops))
    return max(options, key=lambda option: (option.speed, option.version_id))


def resources(host: Host) -> HostResources:
    """The host's own description as the plan classes read it (an older client's host gets
    its one platform and Python)."""
    gpus = tuple(
        plan_classes.Gpu(
            vendor=str(gpu.get("vendor", "")),
            api=str(gpu.get("api", "")),
            model=str(gpu.get("model", "")),
            count=int(gpu.get("count", 1)),
            memory_bytes=int(gpu.get("memory_bytes", 0)),
            driver_version=str(gpu.get("driver_version", "")),
            compute_capability=str(gpu.get("compute_capability", "")),
            opencl_version=str(gpu.get("opencl_version", "")),
        )
        for gpu in host.gpus or []
        if isinstance(gpu, dict)
    )
    return HostResources(
        platforms=tuple(host.platforms or [host.platform]),
        n_cpus=host.n_cpus,
        memory_bytes=host.memory_bytes,
        flops=host.flops or DEFAULT_FLOPS,
        disk_free_bytes=host.disk_free_bytes,
        cpu_features=plan_classes.features(host.cpu_features or []),
        gpus=gpus,
        use_gpus=host.use_gpus,
        runtimes=frozenset(host.runtimes or UNDECLARED_RUNTIMES),
        python_version=host.python_version,
        os_name=host.os_name,
        cpu_vendor=host.cpu_vendor,
        cpu_family=host.cpu_family,
        cpu_model=host.cpu_model,
    )


NOT_CHOSEN = "not among the apps you chose for this computer (your account page, Science)"


@dataclass(frozen=True)
class Usable:
    """What the scheduler may send this host: a version per app, and why the others cannot go."""

    chosen: dict[int, Chosen]  # by app id
    refusals: dict[int, str]  # app id -> why no version of it can run here


def usable_versions(
    host: Host,
    *,
    speeds: dict[int, tuple[float, int]],
    beta_ok: bool,
    draw: Callable[[], float],
    apps: frozenset[int] | None = None,
) -> Usable:
    """For each app with a version this host can run, the one it gets now. ``speeds``: the
    host's measured (speed_flops, samples) by app version id; ``apps``: the apps its volunteer
    chose for it (None: every app)."""
    specs = plan_specs()
    host_resources = resources(host)
    options: dict[int, list[Option]] = {}
    versions: dict[int, AppVersion] = {}
    refusals: dict[int, str] = {}
    for version in live_versions():
        if apps is not None and version.app_id not in apps:
            refusals.setdefault(version.app_id, NOT_CHOSEN)
            continue
        spec = specs.get(version.plan_class)
        needs = VersionNeeds(version.platform, version.runtime, version.python, version.beta)
        why = compatible_usage(spec, needs, host_resources, beta_ok=beta_ok, name=version.plan_class)
        if isinstance(why, Refusal):
            refusals.setdefault(version.app_id, why.reason)
            continue
        measured, samples = speeds.get(version.pk, (0.0, 0))
        options.setdefault(version.app_id, []).append(Option(version.pk, why, measured, samples))
        versions[version.pk] = version
    chosen: dict[int, Chosen] = {}
    explore = settings.TESSERA["VERSION_EXPLORE_PROBABILITY"]
    for app_id, app_options in options.items():
        best = choose(app_options, draw(), explore)
        if best is not None:
            chosen[app_id] = Chosen(versions[best.version_id], best.usage, best.speed)
            refusals.pop(app_id, None)
    return Usable(chosen, refusals)


def compatible_usage(
    spec: Spec | None, needs: VersionNeeds, host: HostResources, *, beta_ok: bool, name: str
) -> Usage | Refusal:
    if spec is None:
        return Refusal(f"the plan class {name} is not defined")
    refused = plan_classes.compatible(needs, host, beta_ok=beta_ok)
    return refused if refused is not None else plan_classes.usage(spec, host)
