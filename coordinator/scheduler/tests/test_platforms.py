"""Every volunteer's hardware (docs/platforms.md): app versions per platform and plan class,
the fastest a host can run once measured, resource checks, homogeneous redundancy, limits
that hold whatever a host claims."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.scheduler import dispatch
from coordinator.scheduler.versions import MIN_SPEED_SAMPLES
from coordinator.testing import CODE_SIGNING_KEY, SignedHost, make_app, make_host, make_units, make_volunteer
from coordinator.work.models import App, AppVersion, Replica, WorkUnit
from coordinator.work.services import register_app_version, transition_units

pytestmark = pytest.mark.django_db

GIB = 1024**3
X86 = "x86_64-pc-linux-gnu"
ARM = "aarch64-unknown-linux-gnu"
ALL = ["python", "wasm", "native"]


def add_version(app: App, **options) -> AppVersion:
    tag = "-".join(str(value) for value in options.values())
    return register_app_version(
        app=app, version=1, bundle=f"bundle {tag}".encode(), signing_key=CODE_SIGNING_KEY, **options
    )


def host(**fields) -> SignedHost:
    fields.setdefault("platforms", [fields.get("platform", X86)])
    fields.setdefault("platform", fields["platforms"][0])
    fields.setdefault("runtimes", ALL)
    fields.setdefault("flops", 1e9)
    return SignedHost(*make_host(**fields))


def report(task: dict, elapsed: float) -> dict:
    data = Report(replica=task["replica"], status="success", cpu_time=elapsed, output=b"out").to_json()
    return {**data, "elapsed": elapsed}


def three_versions() -> tuple[App, dict[str, AppVersion]]:
    """An app as python (any platform; make_app's own), wasm (any) and native for x86-64 Linux."""
    app = make_app()
    versions = {
        "python": AppVersion.objects.get(app=app),
        "wasm": add_version(app, platform="any", runtime="wasm"),
        "native": add_version(app, platform=X86, runtime="native"),
    }
    return app, versions


def test_a_host_gets_the_fastest_version_it_can_run_once_it_has_measured_them(monkeypatch):
    app, versions = three_versions()
    make_units(app, 40, min_quorum=1, target_nresults=1, fpops_estimate=1e10)
    machine = host()
    seconds = {versions["python"].pk: 40.0, versions["wasm"].pk: 8.0, versions["native"].pk: 5.0}
    # Exploring every time: each version gets measured in turn.
    monkeypatch.setattr(dispatch, "draw", lambda: 0.0)
    for _ in range(3 * MIN_SPEED_SAMPLES):
        [task] = machine.rpc(tasks=1).json()["tasks"]
        assert machine.rpc(reports=[report(task, seconds[task["app_version"]["id"]])]).status_code == 200

    monkeypatch.setattr(dispatch, "draw", lambda: 0.99)
    tasks = machine.rpc(tasks=5).json()["tasks"]

    assert {task["app_version"]["id"] for task in tasks} == {versions["native"].pk}
    assert tasks[0]["app_version"]["runtime"] == "native" and tasks[0]["app_version"]["cores"] == 1.0


def test_a_host_of_another_platform_gets_only_what_it_can_run():
    app, versions = three_versions()
    make_units(app, 6, min_quorum=1, target_nresults=1)
    arm = host(platform=ARM)
    python_only = host(runtimes=["python"])

    arm_tasks = arm.rpc(tasks=3).json()["tasks"]
    python_tasks = python_only.rpc(tasks=3).json()["tasks"]

    assert arm_tasks and all(t["app_version"]["id"] != versions["native"].pk for t in arm_tasks)
    assert python_tasks and {t["app_version"]["runtime"] for t in python_tasks} == {"python"}


def test_a_host_too_small_for_the_work_gets_nothing_and_is_told_why():
    app = make_app()
    make_units(app, 2, memory_bytes=32 * GIB)
    disk_app = make_app()
    make_units(disk_app, 2, disk_bytes=10 * GIB)

    reply = host(memory_bytes=8 * GIB, disk_free_bytes=GIB).rpc(tasks=4).json()

    assert reply["tasks"] == []
    assert any("more memory than this computer has (8192 MiB)" in m for m in reply["messages"])
    assert any("more disk space" in m and "(1024 MiB free)" in m for m in reply["messages"])
    big = host(memory_bytes=64 * GIB, disk_free_bytes=100 * GIB).rpc(tasks=4).json()
    assert len(big["tasks"]) == 4


def test_a_host_that_crunches_a_small_share_of_the_time_gets_only_what_it_can_finish_in_time():
    """A unit of 2e12 operations due in a day needs 23 MFLOPS of crunching: a 1 GFLOPS host
    that runs 1% of the time cannot make it (the scheduler counts half of its time, as margin)."""
    make_units(make_app(), 2, fpops_estimate=2e12, delay_bound=86400)
    seldom = host()
    assert seldom.rpc(host_info={"on_fraction": 0.1, "active_fraction": 0.1}).status_code == 200

    reply = seldom.rpc(tasks=2).json()

    assert reply["tasks"] == []
    assert any("could not finish by its deadline" in m and "(1%)" in m for m in reply["messages"]), reply
    often = host()
    assert often.rpc(host_info={"on_fraction": 0.5, "active_fraction": 0.9}).status_code == 200
    assert len(often.rpc(tasks=2).json()["tasks"]) == 2


def test_a_host_without_a_version_for_its_platform_is_told_so():
    app = make_app()
    AppVersion.objects.filter(app=app).delete()
    add_version(app, platform=X86, runtime="native")
    make_units(app, 1)

    reply = host(platform="windows_x86_64").rpc(tasks=1).json()

    assert reply["tasks"] == []
    assert reply["messages"] == ["no version for your platform (windows_x86_64)"]


def test_a_multithreaded_version_gets_its_cores_and_never_goes_to_a_host_with_too_few():
    app = make_app()
    AppVersion.objects.filter(app=app).delete()
    add_version(app, platform=X86, runtime="native", plan_class="mt")  # 2 to 16 cores
    make_units(app, 4, min_quorum=1, target_nresults=1)

    one_core = host(n_cpus=1).rpc(tasks=1).json()
    eight = host(n_cpus=8).rpc(tasks=8).json()  # a task per idle core: one mt task fills them

    assert one_core["tasks"] == [] and one_core["messages"] == ["mt needs 2 cores; this computer has 1"]
    assert len(eight["tasks"]) == 1 and eight["tasks"][0]["app_version"]["cores"] == 8.0
    assert eight["tasks"][0]["app_version"]["plan_class"] == "mt"
    four = host(n_cpus=4).rpc(tasks=8).json()  # more than its cores: two 4-core tasks
    assert [task["app_version"]["cores"] for task in four["tasks"]] == [4.0, 4.0]


def test_beta_versions_go_only_to_volunteers_who_asked_for_them():
    app = make_app()
    AppVersion.objects.filter(app=app).delete()
    add_version(app, runtime="wasm", beta=True)
    make_units(app, 2, min_quorum=1, target_nresults=1)
    tester = make_volunteer()[0]
    tester.beta_work = True
    tester.save()

    assert host().rpc(tasks=1).json()["tasks"] == []
    assert len(host(volunteer=tester).rpc(tasks=1).json()["tasks"]) == 1


def test_hr_replicas_of_a_unit_never_cross_classes():
    app = make_app()
    App.objects.filter(pk=app.pk).update(hr_level=1)
    units = make_units(app, 6, min_quorum=2, target_nresults=2)
    intel = [host(os_name="Linux", cpu_vendor="GenuineIntel") for _ in range(3)]
    amd = [host(os_name="Linux", cpu_vendor="AuthenticAMD") for _ in range(3)]
    for machine in [item for pair in zip(intel, amd, strict=True) for item in pair]:
        machine.rpc(tasks=4)

    for unit in units:
        vendors = set(
            Replica.objects.filter(workunit=unit, host__isnull=False).values_list(
                "host__cpu_vendor", flat=True
            )
        )
        assert len(vendors) <= 1
    assert WorkUnit.objects.filter(hr_class="1:Linux/GenuineIntel").exists()
    assert WorkUnit.objects.filter(hr_class="1:Linux/AuthenticAMD").exists()


def test_an_hr_unit_whose_class_gives_up_is_finished_by_another_class(
    django_capture_on_commit_callbacks, settings
):
    # No host here is reliable: the reissue waits for none (test_acceleration tests the wait).
    settings.TESSERA = {**settings.TESSERA, "ACCELERATED_WAIT_SECONDS": 0}
    app = make_app()
    App.objects.filter(pk=app.pk).update(hr_level=1)
    [unit] = make_units(app, 1, min_quorum=1, target_nresults=1, max_error_results=3)
    intel = host(os_name="Linux", cpu_vendor="GenuineIntel")
    amd = host(os_name="Linux", cpu_vendor="AuthenticAMD")
    [task] = intel.rpc(tasks=1).json()["tasks"]
    assert amd.rpc(tasks=1).json()["tasks"] == []  # the unit is Intel's now

    failed = Report(replica=task["replica"], status="client_error", cpu_time=1.0, message="crashed")
    intel.rpc(reports=[failed])
    from django.utils import timezone

    transition_units(unit_ids=[unit.pk], now=timezone.now())
    unit.refresh_from_db()
    assert unit.hr_class == ""
    [retry] = amd.rpc(tasks=1).json()["tasks"]
    assert retry["workunit"] == unit.name


def test_hosts_of_a_made_up_kind_cannot_keep_their_units_from_audits(settings):
    """Colluders describing one odd kind of host get a unit's replicas to themselves, as HR
    must allow; the audit of their agreed output waits for a host of their kind only
    DISPUTE_WAIT_SECONDS, then goes to an established host of another kind, and does not hold
    the unit for that kind either."""
    app = make_app()
    App.objects.filter(pk=app.pk).update(hr_level=2)
    [unit] = make_units(app, 1, min_quorum=2, target_nresults=2)
    odd = {"os_name": "Linux", "cpu_vendor": "GenuineIntel", "cpu_family": "6", "cpu_model": "Ours Only"}
    first, second = host(**odd), host(**odd)
    assert len(first.rpc(tasks=1).json()["tasks"]) == 1
    assert len(second.rpc(tasks=1).json()["tasks"]) == 1
    unit.refresh_from_db()
    held = (unit.hr_class, unit.homogeneous_until)
    audit = Replica.objects.create(workunit=unit, reserved=True)
    auditor = host(established=True, os_name="Linux", cpu_vendor="AuthenticAMD")

    assert auditor.rpc(tasks=1).json()["tasks"] == [], "it waits for a host of the unit's kind first"
    wait = settings.TESSERA["DISPUTE_WAIT_SECONDS"]
    Replica.objects.filter(pk=audit.pk).update(created=timezone.now() - timedelta(seconds=wait + 1))
    [task] = auditor.rpc(tasks=1).json()["tasks"]

    assert task["replica"] == audit.pk
    unit.refresh_from_db()
    assert (unit.hr_class, unit.homogeneous_until) == held


@override_settings()
def test_a_host_cannot_hold_more_than_its_limit_however_it_describes_itself(settings):
    settings.TESSERA = {**settings.TESSERA, "MAX_IN_PROGRESS_PER_HOST": 12}
    app = make_app()
    make_units(app, 60, min_quorum=1, target_nresults=1)
    liar = host(n_cpus=4, gpus=[{"vendor": "nvidia", "api": "cuda", "count": 64, "memory_bytes": 80 * GIB}])
    described = {
        "flops": 1e9,
        "n_cpus": 256,
        "platforms": [X86],
        "gpus": [{"vendor": "nvidia", "api": "cuda", "model": "H100", "count": 64, "memory_bytes": 80 * GIB}],
    }

    got = sum(len(liar.rpc(tasks=50, host_info=described).json()["tasks"]) for _ in range(3))

    assert got == 12


def test_a_host_description_is_checked_and_stored():
    machine = host()
    description = {
        "platforms": [ARM, "arm-unknown-linux-gnueabihf"],
        "cpu_vendor": "ARM",
        "cpu_features": ["NEON", "asimd"],
        "disk_free_bytes": 5 * GIB,
        "gpus": [],
        "use_gpus": False,
        "runtimes": ["python", "wasm"],
        "python_version": "3.11.2",
        "on_fraction": 0.75,
        "active_fraction": 0.5,
    }

    assert machine.rpc(host_info=description).status_code == 200
    machine.host.refresh_from_db()
    assert (machine.host.on_fraction, machine.host.active_fraction) == (0.75, 0.5)
    assert machine.rpc(host_info={"on_fraction": 1.5}).status_code == 400
    assert (machine.host.platform, machine.host.platforms[1]) == (ARM, "arm-unknown-linux-gnueabihf")
    assert machine.host.cpu_features == ["asimd", "neon"] and machine.host.disk_free_bytes == 5 * GIB
    bad = machine.rpc(host_info={"gpus": [{"vendor": "nvidia", "api": "cuda", "count": 10_000}]})
    assert bad.status_code == 400
    assert machine.rpc(host_info={"platforms": ["../etc"]}).status_code == 400
    machine.host.refresh_from_db()
    assert machine.host.platform == ARM  # a refused request changed nothing
