"""Native apps (docs/apps.md, "Native apps"): a small C program, compiled here with gcc into a
signed bundle, installed and run through the real sandbox; and the cores an ``mt`` task takes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from rich.console import Console

from tessera_client.app_contract import clean_env
from tessera_client.app_manifest import NATIVE, installed_manifest, runtime_of
from tessera_client.bundles import AppCache, BundleRefused
from tessera_client.journal import Journal
from tessera_client.leftover_apps import kill_leftover
from tessera_client.procfs import stat_fields
from tessera_client.running_apps import RunningApps, progress_display
from tessera_client.sandbox import AppProcess, Limits
from tessera_client.scheduling import PROCESSES_PER_TASK, THREAD_ADDRESS_BYTES, fits, task_cores, task_limits
from tessera_client.signing import b64encode, bundle_message
from tessera_client.task_record import DONE

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not LINUX, reason="the test app is built for Linux with gcc")
SOURCE = Path(__file__).with_name("data") / "native" / "counter.c"
PLATFORM = "x86_64-pc-linux-gnu"
PROJECT_KEY = SigningKey.generate()
PINNED = bytes(PROJECT_KEY.verify_key)
MiB = 1024 * 1024
ENTRYPOINT = "bin/counter"
MANIFEST = {"api": 1, "runtime": "native", "entrypoint": ENTRYPOINT}
SCHED_IDLE = 5


@pytest.fixture(scope="module")
def executable(tmp_path_factory) -> bytes:
    """The test app, compiled for this computer."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc on PATH to build the native test app (Debian: apt-get install gcc)")
    target = tmp_path_factory.mktemp("native") / "counter"
    subprocess.run(
        [gcc, "-O1", "-Wall", "-Werror", "-pthread", "-o", str(target), str(SOURCE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target.read_bytes()


def archive(entries: dict[str, bytes]) -> bytes:
    """A zip as a packer that keeps no permission bits writes it (writestr: mode 0600)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in entries.items():
            handle.writestr(name, data)
    return buffer.getvalue()


def native_bundle(program: bytes, manifest: dict | None = None, **extra: bytes) -> bytes:
    entries = {"tessera-app.json": json.dumps(manifest or MANIFEST).encode(), ENTRYPOINT: program}
    entries.update({name.replace("__", "/"): data for name, data in extra.items()})
    return archive(entries)


def signed(data: bytes, *, platform: str = PLATFORM, cores: float = 1, plan_class: str = "cpu") -> dict:
    sha = hashlib.sha256(data).hexdigest()
    message = bundle_message(app="counter", version=1, platform=platform, sha256=sha)
    return {
        "id": 1,
        "app": "counter",
        "version": 1,
        "platform": platform,
        "plan_class": plan_class,
        "cores": cores,
        "gpu": None,
        "url": "/bundles/counter",
        "sha256": sha,
        "signature": b64encode(PROJECT_KEY.sign(message).signature),
        "size": len(data),
    }


@pytest.fixture()
def installed(tmp_path, executable) -> Path:
    """The native app's entrypoint, verified and unpacked in an app cache."""
    data = native_bundle(executable, **{"share__table.txt": b"1 2 3\n"})
    return AppCache(tmp_path / "apps").install(signed(data), data, PINNED)


def limits(**change) -> Limits:
    values = dict(
        cpu_seconds=30,
        memory_bytes=512 * MiB,
        file_bytes=64 * MiB,
        processes=32,
        wall_deadline=time.time() + 60,
    )
    values.update(change)
    return Limits(**values)


def start(entrypoint: Path, slot: Path, input: str, **change) -> AppProcess:
    slot.mkdir(parents=True, exist_ok=True)
    (slot / "input").write_text(input)
    return AppProcess.start(entrypoint=entrypoint, slot=slot, limits=limits(**change), native=True)


def finish(app: AppProcess, timeout: float = 30):
    outcome = app.wait(timeout)
    if outcome is None:
        app.kill("the test timed out")
    assert outcome is not None, "the app did not end in time"
    return outcome


def wait_for(condition, timeout: float = 15.0) -> bool:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.02)
    return True


def output(slot: Path) -> dict:
    return json.loads((slot / "output").read_text())


def squares(n: int) -> int:
    return sum(i * i for i in range(1, n + 1))


def limit_line(pid: int, name: str) -> list[str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line[len(name) :].split()
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


# -- installing ---------------------------------------------------------------------------------
def test_a_native_bundle_installs_with_only_its_entrypoint_executable(installed, executable):
    manifest, folder = installed_manifest(installed)

    assert manifest.runtime == NATIVE and manifest.is_native and runtime_of(installed) == NATIVE
    assert installed == folder / ENTRYPOINT and installed.read_bytes() == executable
    assert stat.S_IMODE(installed.stat().st_mode) == 0o555  # the zip said 0600: the client set it
    assert os.access(installed, os.X_OK)
    assert stat.S_IMODE((folder / "share" / "table.txt").stat().st_mode) == 0o444
    assert stat.S_IMODE((folder / "tessera-app.json").stat().st_mode) == 0o444


REFUSED = {
    "entrypoint missing": ({**MANIFEST, "entrypoint": "bin/absent"}, "is not a file in the bundle"),
    "entrypoint escapes": ({**MANIFEST, "entrypoint": "../counter"}, "is not a safe path"),
    "entrypoint absolute": ({**MANIFEST, "entrypoint": "/bin/sh"}, "is not a safe path"),
    "entrypoint a dot part": ({**MANIFEST, "entrypoint": "bin/./counter"}, "is not a safe path"),
    "entrypoint named as python": ({**MANIFEST, "entrypoint": "main.py"}, "may not end in .py or .wasm"),
    "runtime unknown": ({**MANIFEST, "runtime": "elf"}, "('python', 'wasm' or 'native')"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_native_bundle_whose_entrypoint_is_missing_or_unsafe_is_refused(tmp_path, case):
    manifest, words = REFUSED[case]
    data = native_bundle(b"\x7fELF not really", manifest, main__py=b"")
    cache = AppCache(tmp_path / "apps")

    with pytest.raises(BundleRefused) as refused:
        cache.install(signed(data), data, PINNED)

    assert refused.value.code == "bad_manifest" and words in str(refused.value), str(refused.value)
    assert not cache.root.exists() or [p for p in cache.root.iterdir() if not p.name.startswith(".")] == []


def test_a_native_bundle_signed_for_another_platform_is_refused(tmp_path, executable):
    data = native_bundle(executable)
    version = dict(signed(data, platform="aarch64-unknown-linux-gnu"), platform=PLATFORM)

    with pytest.raises(BundleRefused) as refused:
        AppCache(tmp_path / "apps").install(version, data, PINNED)

    assert refused.value.code == "bad_signature"


# -- running ------------------------------------------------------------------------------------
def test_a_native_task_runs_in_the_sandbox_with_the_contracts_environment(installed, tmp_path):
    app = start(installed, tmp_path / "slot", "1000 50", cpu_seconds=77, memory_bytes=300 * MiB)
    try:
        assert wait_for(lambda: app.progress() > 0), "the app never started working"
        fields = stat_fields(app.pid)  # what the kernel says the executable itself runs under
        assert fields is not None and int(fields[16]) == 19 and int(fields[38]) == SCHED_IDLE
        assert limit_line(app.pid, "Max cpu time")[:2] == ["77", "79"]
        assert limit_line(app.pid, "Max address space")[:1] == [str(300 * MiB)]
        assert Path(f"/proc/{app.pid}/cwd").resolve() == app.slot
        assert Path(f"/proc/{app.pid}/exe").resolve() == installed.resolve()
        environ = Path(f"/proc/{app.pid}/environ").read_bytes().split(b"\0")
        assert sorted(e.decode() for e in environ if e) == sorted(
            f"{k}={v}" for k, v in clean_env(app.slot, cores=1).items()
        )
        if app.network_isolated:
            assert os.readlink(f"/proc/{app.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        app.kill("test over")


def test_a_native_task_succeeds_with_its_output_and_progress(installed, tmp_path):
    app = start(installed, tmp_path / "slot", "4 50")
    outcome = finish(app)

    assert outcome.status == "success" and outcome.exit_code == 0 and outcome.message == "", outcome
    assert output(app.slot) == {"total": squares(4), "starts": 1, "resumed_at": 0, "cores": 1, "omp": "1"}
    assert app.progress() == 1.0 and outcome.cpu_time >= 0.15
    assert "done after 4 steps" in (app.slot / "stdout.txt").read_text()


def test_progress_is_read_while_a_native_task_runs_and_it_resumes_from_its_checkpoint(installed, tmp_path):
    first = start(installed, tmp_path / "slot", "40 50")
    try:
        assert wait_for(lambda: 0.25 <= first.progress() < 1.0), "the app reported no progress"
    finally:
        first.stop()  # the client shuts down: killed, no outcome, the slot kept
    assert first.poll() is None and not (first.slot / "output").exists()

    second = AppProcess.start(entrypoint=installed, slot=first.slot, limits=limits(), native=True)
    outcome = finish(second)

    assert outcome.status == "success", outcome
    result = output(second.slot)
    assert result["total"] == squares(40) and result["starts"] == 2 and 10 <= result["resumed_at"] < 40


def test_a_suspended_native_task_uses_no_cpu_until_resumed(installed, tmp_path):
    app = start(installed, tmp_path / "slot", "1000 50")
    try:
        assert wait_for(lambda: app.cpu_time() >= 0.2), "the app never got the CPU"
        app.suspend()
        assert app.suspended
        time.sleep(0.1)
        before = app.cpu_time()
        progress = app.progress()
        time.sleep(0.6)
        during = app.cpu_time() - before
        assert app.progress() == progress
        app.resume()
        assert not app.suspended
        assert during < 0.05
        assert wait_for(lambda: app.cpu_time() >= before + 0.2), "the app did not run again after resume"
    finally:
        outcome = app.kill("test over")
    assert outcome.message.startswith("test over")


def test_an_aborted_native_task_is_killed_with_its_threads(installed, tmp_path):
    app = start(installed, tmp_path / "slot", "1000 50", cores=2.0)
    assert wait_for(lambda: app.progress() > 0), "the app never started working"
    pid = app.pid

    outcome = app.kill("aborted by the project")

    assert outcome.status == "client_error" and outcome.exit_code == -signal.SIGKILL
    assert outcome.message.startswith("aborted by the project")
    assert not Path(f"/proc/{pid}").exists() and not (app.slot / "output").exists()
    assert app.poll() is outcome


def test_a_native_app_left_by_a_crashed_client_is_found_by_its_slot_and_killed(installed, tmp_path):
    app = start(installed, tmp_path / "slot", "1000 50")
    try:
        assert wait_for(lambda: app.progress() > 0), "the app never started working"
        assert kill_leftover(app.pid, tmp_path / "elsewhere") is False
        assert kill_leftover(app.pid, app.slot) is True
        outcome = app.wait(5)
        assert outcome is not None and outcome.exit_code == -signal.SIGKILL
    finally:
        app.kill("test over")


def test_a_native_app_exiting_75_has_failed_it_is_not_run_again(tmp_path):
    # The wasm runner's "checkpointed, run me again" is not part of the native contract.
    folder = tmp_path / "app"
    folder.mkdir()
    script = folder / "app"
    script.write_text("#!/bin/sh\necho checkpointed >&2\nexit 75\n")
    script.chmod(0o555)

    outcome = finish(start(script, tmp_path / "slot", ""))

    assert outcome.status == "client_error" and outcome.exit_code == 75
    assert outcome.message.startswith("the app exited with code 75") and "checkpointed" in outcome.message


def test_a_native_entrypoint_that_cannot_be_executed_fails_in_plain_words(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app").write_bytes(b"\x7fELF")
    (folder / "app").chmod(0o444)

    outcome = finish(start(folder / "app", tmp_path / "slot", ""))

    assert outcome.status == "client_error" and outcome.exit_code == 127
    assert "cannot run" in outcome.message and str(folder / "app") in outcome.message


# -- cores --------------------------------------------------------------------------------------
def task(replica: int, version: dict) -> dict:
    return {
        "replica": replica,
        "workunit": f"wu{replica}",
        "deadline": "2030-01-01T00:00:00Z",
        "fpops_estimate": 1e9,
        "app_version": version,
    }


def busy_seconds() -> float:
    """CPU seconds every process on this computer has used since boot (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="an mt task on 2 cores needs a computer with 2")
def test_an_mt_task_gets_its_cores_and_reports_the_cpu_of_all_its_threads(tmp_path, executable):
    # Through the client's own path: the task's app version says cores 2, the limits follow it,
    # and the CPU time in the journal is the whole process's. Each thread burns a fixed amount of
    # its own CPU time, so the total proves every thread is counted; whether the threads ran side
    # by side (CPU time near twice the wall time) can only be judged while the other processes on
    # this computer leave its cores idle, so a run is tried up to three times.
    data = native_bundle(executable)
    version = signed(data, cores=2, plan_class="mt")
    entrypoint = AppCache(tmp_path / "apps").install(version, data, PINNED)
    journal = Journal(tmp_path / "tasks", owner=True)
    said: list[str] = []
    apps = RunningApps(
        journal, progress_display(Console(file=io.StringIO())), said.append, time.time, isolate_network=True
    )
    steps, ms = 6, 250
    runs = []
    for replica in (1, 2, 3):
        record = journal.receive("p", task(replica, version), f"{steps} {ms}".encode(), time.time())
        limits = task_limits(record.task, flops=1e9, deadline=time.time() + 60, host_cores=2)
        assert limits.cores == 2.0 and limits.cpu_seconds == 2 * 300
        began, busy_before = time.monotonic(), busy_seconds()
        apps.launch(record, entrypoint, limits, time.time())
        assert apps.cores_in_use() == 2.0
        running = apps.running[("p", replica)].process
        assert limit_line(running.pid, "Max cpu time")[:2] == ["600", "602"]
        assert wait_for(lambda: apps.reap(time.time()) != [], timeout=60), "the mt task did not end"
        wall, busy = time.monotonic() - began, busy_seconds() - busy_before
        assert apps.cores_in_use() == 0
        done = journal.get("p", replica)
        assert done is not None and done.state == DONE and done.outcome is not None, said
        assert done.outcome["status"] == "success", done.outcome
        result = json.loads(journal.output_path(done).read_text())
        assert result == {"total": squares(steps), "starts": 1, "resumed_at": 0, "cores": 2, "omp": "2"}
        cpu = done.outcome["cpu_time"]
        assert cpu >= 0.95 * 2 * steps * ms / 1000  # every thread's CPU time is counted
        others = max(0.0, busy - cpu) / wall  # cores the rest of the computer kept busy meanwhile
        runs.append((round(cpu / wall, 2), round(others, 2)))
        if cpu / wall > 1.4:
            return
        assert others > 0.3, f"an mt task on 2 idle cores ran at {cpu / wall:.2f} x its wall time: {runs}"
    pytest.skip(f"other processes kept this computer's cores busy (CPU/wall, their cores): {runs}")


def test_a_volunteer_who_turned_native_apps_off_never_has_one_run(tmp_path, executable):
    """Even a task sent before the preference changed (or by a project that did not listen)
    ends as an error without its program starting."""
    data = native_bundle(executable)
    version = signed(data)
    entrypoint = AppCache(tmp_path / "apps").install(version, data, PINNED)
    journal = Journal(tmp_path / "tasks", owner=True)
    apps = RunningApps(
        journal, progress_display(Console(file=io.StringIO())), print, time.time, isolate_network=True
    )
    apps.native_allowed = lambda: False
    record = journal.receive("p", task(1, version), b"4 50", time.time())

    apps.launch(record, entrypoint, limits(), time.time())

    done = journal.get("p", 1)
    assert apps.running == {} and done is not None and done.state == DONE and done.outcome is not None
    assert done.outcome["status"] == "client_error" and "native_apps" in done.outcome["message"]
    assert not journal.slot(done).joinpath("output").exists()


def test_a_python_task_on_two_cores_is_told_so_and_a_single_core_one_keeps_its_environment(tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(
        "import json, os\njson.dump(dict(os.environ), open(os.environ['TESSERA_OUTPUT'], 'w'))\n"
    )
    seen = {}
    for cores in (1.0, 2.0):
        slot = tmp_path / f"slot{cores:g}"
        slot.mkdir()
        app = AppProcess.start(entrypoint=app_dir / "main.py", slot=slot, limits=limits(cores=cores))
        assert finish(app).status == "success"
        seen[cores] = output(slot)

    assert "TESSERA_CORES" not in seen[1.0] and "OMP_NUM_THREADS" not in seen[1.0]
    assert seen[2.0]["TESSERA_CORES"] == seen[2.0]["OMP_NUM_THREADS"] == "2"
    with pytest.raises(ValueError):
        clean_env(tmp_path, cores=0)


def test_the_cores_a_task_takes_come_from_its_app_version():
    def of(version) -> float:
        return task_cores({"app_version": version}, host_cores=8)

    assert task_cores({}) == 1.0 and of({"app": "a"}) == 1.0
    assert of({"cores": 4, "plan_class": "mt"}) == 4.0 and of({"cores": 0.5}) == 0.5
    for nonsense in (0, -2, True, "4", None, float("nan"), float("inf")):
        assert of({"cores": nonsense}) == 1.0, nonsense
    # More than the volunteer lets the client use: it runs alone, on all of them.
    assert task_cores({"app_version": {"cores": 16}}, host_cores=4) == 4.0


def test_an_mt_tasks_limits_grow_with_its_cores():
    one = task_limits({"fpops_estimate": 1e13}, flops=1e9, deadline=0.0)
    four = task_limits({"fpops_estimate": 1e13, "app_version": {"cores": 4}}, flops=1e9, deadline=0.0)

    assert (one.cores, one.threads, one.processes) == (1.0, 1, PROCESSES_PER_TASK)
    assert (four.cores, four.threads) == (4.0, 4)
    assert four.cpu_seconds == 4 * one.cpu_seconds  # RLIMIT_CPU counts every thread
    assert four.processes == PROCESSES_PER_TASK + 4
    assert four.memory_bytes == one.memory_bytes + 3 * THREAD_ADDRESS_BYTES
    half = task_limits({"app_version": {"cores": 1.5}}, flops=1e9, deadline=0.0)
    assert half.cores == 1.5 and half.threads == 1 and half.processes == PROCESSES_PER_TASK


def start_in_order(waiting: list[float], *, in_use: float, host_cores: int) -> list[float]:
    """What the daemon starts: tasks in run order while they fit, stopping at the first that does not."""
    started = []
    for cores in waiting:
        if not fits(cores, in_use=in_use, host_cores=host_cores):
            break
        started.append(cores)
        in_use += cores
    return started


def test_the_tasks_running_at_once_never_take_more_cores_than_the_host_has():
    assert start_in_order([4, 1, 1], in_use=0, host_cores=4) == [4]
    assert start_in_order([1, 1, 1, 1, 1], in_use=0, host_cores=4) == [1, 1, 1, 1]
    assert start_in_order([1, 4, 1], in_use=0, host_cores=4) == [1]  # the 4-core task waits, in front
    assert start_in_order([4], in_use=1, host_cores=4) == []
    assert start_in_order([0.1, 0.2, 0.7, 3], in_use=0, host_cores=4) == [0.1, 0.2, 0.7, 3]

    # A day of tasks coming and going: the cores in use never pass the host's.
    rng = random.Random(16)
    for host_cores in (1, 2, 4, 8):
        running: list[float] = []
        waiting: list[float] = []
        for _ in range(2000):
            waiting.append(
                task_cores(
                    {"app_version": {"cores": rng.choice([1, 1, 1, 2, 4, 0.5, 16])}}, host_cores=host_cores
                )
            )
            if running and rng.random() < 0.5:
                running.pop(rng.randrange(len(running)))
            started = start_in_order(waiting, in_use=sum(running), host_cores=host_cores)
            del waiting[: len(started)]
            running.extend(started)
            assert sum(running) <= host_cores + 1e-9
        assert len(waiting) < 2000  # and work does get done
