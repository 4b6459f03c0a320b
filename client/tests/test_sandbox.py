"""The sandbox, with real processes: small apps written into tmp_path run through AppProcess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tessera_client.app_contract import clean_env, read_progress
from tessera_client.leftover_apps import kill_leftover
from tessera_client.sandbox import AppProcess, Limits

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="Linux-only feature (namespaces, /proc, SCHED_IDLE)")
CLIENT_DIR = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
CONTRACT_KEYS = [
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "TESSERA_API",
    "TESSERA_SLOT",
    "TESSERA_INPUT",
    "TESSERA_OUTPUT",
    "TESSERA_CHECKPOINT",
    "TESSERA_PROGRESS",
]


def limits(**change) -> Limits:
    values = dict(
        cpu_seconds=20,
        memory_bytes=1024 * MiB,
        file_bytes=64 * MiB,
        processes=32,
        wall_deadline=time.time() + 20,
    )
    values.update(change)
    return Limits(**values)


def write_app(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entrypoint = folder / "main.py"
    entrypoint.write_text(textwrap.dedent(source))
    return entrypoint


def start(tmp_path: Path, source: str, *, input: str = "", slot_name: str = "slot", **options) -> AppProcess:
    slot = tmp_path / slot_name
    slot.mkdir(exist_ok=True)
    (slot / "input").write_text(input)
    entrypoint = write_app(tmp_path / f"app-{slot_name}", source)
    return AppProcess.start(
        entrypoint=entrypoint, slot=slot, limits=options.pop("limits", limits()), **options
    )


def run(tmp_path: Path, source: str, timeout: float = 10, **options):
    app = start(tmp_path, source, **options)
    outcome = app.wait(timeout)
    if outcome is None:
        app.kill("the test timed out")
    assert outcome is not None, "the app did not end in time"
    return app, outcome


def output(app: AppProcess):
    return json.loads((app.slot / "output").read_text())


def wait_for(condition, timeout: float = 5.0) -> bool:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.02)
    return True


def gone(pid: int) -> bool:
    """The process no longer runs (it may be a zombie waiting for init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


SUCCESS_APP = """
    import os, time
    text = open(os.environ["TESSERA_INPUT"]).read()
    while time.process_time() < 0.3:
        pass
    print("hello from the app")
    with open(os.environ["TESSERA_PROGRESS"], "w") as handle:
        handle.write("1.0")
    with open(os.environ["TESSERA_OUTPUT"], "w") as handle:
        handle.write(text.upper())
"""


def test_an_app_that_writes_its_output_succeeds_and_its_cpu_time_is_measured(tmp_path):
    app, outcome = run(tmp_path, SUCCESS_APP, input="tessera")
    assert outcome.status == "success" and outcome.exit_code == 0 and outcome.message == ""
    assert (app.slot / "output").read_text() == "TESSERA"
    assert outcome.cpu_time >= 0.3 and app.cpu_time() == outcome.cpu_time
    assert "hello from the app" in (app.slot / "stdout.txt").read_text()
    assert app.progress() == 1.0


def test_progress_is_clamped_and_nonsense_reads_as_zero(tmp_path):
    assert read_progress(tmp_path) == 0.0
    for text, expected in [("0.25", 0.25), ("7", 1.0), ("-3", 0.0), ("nan", 0.0), ("half", 0.0), ("", 0.0)]:
        (tmp_path / "progress").write_text(text)
        assert read_progress(tmp_path) == expected, text


def test_the_app_gets_exactly_the_contracts_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("TESSERA_SECRET", "must not leak")
    app, outcome = run(
        tmp_path,
        """
        import json, os, sys
        seen = {"env": dict(os.environ), "path": sys.path, "tmp": os.path.isdir(os.environ["TMPDIR"])}
        with open(os.environ["TESSERA_OUTPUT"], "w") as handle:
            json.dump(seen, handle)
        """,
    )
    assert outcome.status == "success"
    seen = output(app)
    slot = str(app.slot)
    assert seen["env"] == clean_env(app.slot)
    assert sorted(seen["env"]) == sorted(CONTRACT_KEYS)
    assert seen["env"]["HOME"] == slot and seen["env"]["TMPDIR"] == f"{slot}/tmp" and seen["tmp"]
    assert seen["env"]["PATH"] == "/usr/bin:/bin" and seen["env"]["LANG"] == "C.UTF-8"
    assert str(tmp_path / "elsewhere") not in seen["path"]


def test_the_app_runs_at_the_lowest_cpu_priority(tmp_path):
    app, outcome = run(
        tmp_path,
        """
        import json, os
        policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
        with open(os.environ["TESSERA_OUTPUT"], "w") as handle:
            json.dump({"nice": os.nice(0), "policy": policy}, handle)
        """,
    )
    assert outcome.status == "success"
    seen = output(app)
    assert seen["nice"] == 19
    if LINUX:
        assert seen["policy"] == os.SCHED_IDLE


CONNECT_APP = """
    import os, socket
    try:
        socket.create_connection(("127.0.0.1", int(open(os.environ["TESSERA_INPUT"]).read())), timeout=3)
        result = "connected"
    except OSError as error:
        result = f"failed: {error}"
    with open(os.environ["TESSERA_OUTPUT"], "w") as handle:
        handle.write(result)
"""


@linux_only
def test_the_app_is_cut_off_from_the_network(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = str(listener.getsockname()[1])
        app, outcome = run(tmp_path, CONNECT_APP, input=port)
        # The same app, not isolated, does reach the listener: the failure above is the sandbox's.
        control, control_outcome = run(
            tmp_path, CONNECT_APP, input=port, slot_name="open", isolate_network=False
        )
    assert app.network_isolated is True
    assert outcome.status == "success" and (app.slot / "output").read_text().startswith("failed")
    assert control.network_isolated is False
    assert control_outcome.status == "success" and (control.slot / "output").read_text() == "connected"


def test_a_busy_loop_hits_the_cpu_time_limit(tmp_path):
    _, outcome = run(tmp_path, "while True:\n    pass\n", limits=limits(cpu_seconds=1))
    assert outcome.status == "client_error"
    assert outcome.exit_code in (-signal.SIGXCPU, -signal.SIGKILL)
    assert outcome.message.startswith("CPU time limit of 1 s exceeded")
    # SIGXCPU says the kernel's limit stopped it. The CPU time the client reads back is the
    # kernel's tick-sampled account, which on a loaded machine reads short of the limit (0.78 s
    # seen), never past the hard limit a second or two later.
    assert 0.5 <= outcome.cpu_time <= 1 + 2


def test_an_app_that_allocates_too_much_runs_out_of_memory(tmp_path):
    app, outcome = run(
        tmp_path,
        """
        import os
        block = bytearray(2 * 1024**3)
        open(os.environ["TESSERA_OUTPUT"], "w").write("x")
        """,
        limits=limits(memory_bytes=256 * MiB),
    )
    assert outcome.status == "client_error" and not (app.slot / "output").exists()
    assert outcome.message.startswith("out of memory (limit 256 MiB)")
    assert "MemoryError" in outcome.message


RESERVE_THEN_WRITE = """
import json, mmap, os
found = {}
try:
    reservation = mmap.mmap(-1, 3 * 1024**3, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)  # PROT_NONE
    found["reserved"] = True
except OSError:
    found["reserved"] = False
try:
    block = bytearray(512 * 1024**2)
    found["wrote"] = True
except MemoryError:
    found["wrote"] = False
open(os.environ["TESSERA_OUTPUT"], "w").write(json.dumps(found))
"""


@pytest.mark.parametrize(("reserved_gib", "reserved"), [(0, False), (4, True)])
def test_reserved_address_space_can_be_reserved_but_never_written(tmp_path, reserved_gib, reserved):
    # A wasm runner reserves 4 GiB for its linear memory; what it may write stays the limit.
    app, outcome = run(
        tmp_path,
        RESERVE_THEN_WRITE,
        limits=limits(memory_bytes=256 * MiB, reserved_bytes=reserved_gib * 1024 * MiB),
    )

    assert outcome.status == "success", outcome.message
    assert output(app) == {"reserved": reserved, "wrote": False}


def test_writing_a_file_larger_than_the_limit_fails(tmp_path):
    app, outcome = run(
        tmp_path,
        """
        import os
        with open(os.environ["TESSERA_OUTPUT"], "wb") as handle:
            handle.write(b"x" * (2 * 1024 * 1024))
        """,
        limits=limits(file_bytes=1 * MiB),
    )
    assert outcome.status == "client_error"
    assert outcome.message.startswith("file size limit exceeded")
    assert (app.slot / "output").stat().st_size <= 1 * MiB


FORK_BOMB = """
    import json, os, time
    children, error = [], ""
    for _ in range(40):
        try:
            pid = os.fork()
        except OSError as failure:
            error = str(failure)
            break
        if pid == 0:
            time.sleep(10)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    with open(os.environ["TESSERA_OUTPUT"], "w") as handle:
        json.dump({"forked": len(children), "error": error}, handle)
"""


@pytest.mark.skipif(
    not LINUX or os.geteuid() != 0,
    reason="as root the limit comes from a pids cgroup (RLIMIT_NPROC does not bind root, "
    "not even in a user namespace); the non-root path is the next test",
)
def test_a_fork_bomb_is_bounded_by_the_process_limit(tmp_path):
    app = start(tmp_path, FORK_BOMB, limits=limits(processes=5))
    if not app.process_limit_enforced:
        app.kill("skipped")
        pytest.skip("running as root and no writable pids cgroup: the process limit cannot bind here")
    outcome = app.wait(10)
    assert outcome is not None and outcome.status == "success"
    result = output(app)
    assert 0 < result["forked"] <= 4 and "Resource temporarily unavailable" in result["error"]


NOBODY = 65534
NOBODY_HELPER = """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from tessera_client.sandbox import AppProcess, Limits
    work = Path(sys.argv[2])
    limits = Limits(cpu_seconds=10, memory_bytes=1 << 30, file_bytes=1 << 20, processes=5,
                    wall_deadline=time.time() + 10)
    (work / "slot").mkdir()
    app = AppProcess.start(entrypoint=work / "main.py", slot=work / "slot", limits=limits,
                           python=sys.executable)
    outcome = app.wait(10)
    print(json.dumps({"enforced": app.process_limit_enforced, "status": outcome and outcome.status,
                      "message": outcome and outcome.message,
                      "result": json.loads((work / "slot" / "output").read_text())}))
"""


def _interpreter_for_nobody():
    """An interpreter the unprivileged user can run (ours may live under root's 0700 home)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info >= (3, 9)"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                capture_output=True,
                timeout=10,
                cwd="/",
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(not LINUX, reason="RLIMIT_NPROC per user and /proc are Linux's")
def test_an_unprivileged_users_fork_bomb_is_bounded_by_rlimit_nproc():
    if os.geteuid() == 0:
        python = _interpreter_for_nobody()
        if python is None:
            pytest.skip("no Python interpreter the nobody user can run")
        as_user = dict(user=NOBODY, group=NOBODY, extra_groups=[])
    else:
        python, as_user = sys.executable, {}
    work = Path(tempfile.mkdtemp(prefix="tessera-sandbox-"))  # not tmp_path: root's is 0700
    try:
        write_app(work, FORK_BOMB)
        helper = work / "helper.py"
        helper.write_text(textwrap.dedent(NOBODY_HELPER))
        # A copy of the package beside it: the checkout may sit in a folder only root can read.
        shutil.copytree(CLIENT_DIR / "tessera_client", work / "lib" / "tessera_client")
        if as_user:
            for path in (work, helper, work / "main.py"):
                os.chown(path, NOBODY, NOBODY)
        done = subprocess.run(
            [python, "-I", str(helper), str(work / "lib"), str(work)],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=str(work),
            **as_user,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert report["enforced"] is True and report["status"] == "success", report
    assert (
        0 < report["result"]["forked"] <= 5
        and "Resource temporarily unavailable" in report["result"]["error"]
    )


def test_an_app_past_its_deadline_is_killed(tmp_path):
    app, outcome = run(
        tmp_path, "import time\ntime.sleep(30)\n", limits=limits(wall_deadline=time.time() + 1)
    )
    assert outcome.status == "client_error" and outcome.message == "deadline passed"
    assert outcome.exit_code == -signal.SIGKILL and app.poll() is outcome

    # poll() judges the deadline by the clock it is given.
    late = start(tmp_path, "import time\ntime.sleep(30)\n", slot_name="late")
    assert late.poll(now=time.time()) is None
    assert late.poll(now=late.limits.wall_deadline + 1).message == "deadline passed"


def test_a_crash_reports_the_exit_code_and_the_exception(tmp_path):
    _, outcome = run(tmp_path, "print('working')\nraise ValueError('the answer is not 42')\n")
    assert outcome.status == "client_error" and outcome.exit_code == 1
    assert outcome.message.startswith("the app exited with code 1")
    assert "ValueError: the answer is not 42" in outcome.message


def test_exiting_without_output_is_an_error(tmp_path):
    _, outcome = run(tmp_path, "pass\n")
    assert outcome.status == "client_error" and outcome.exit_code == 0
    assert outcome.message == "the app exited without writing its output"


@linux_only
def test_a_suspended_app_makes_no_cpu_progress(tmp_path):
    app = start(tmp_path, "while True:\n    pass\n")
    try:
        assert wait_for(lambda: app.cpu_time() >= 0.2), "the app never got the CPU"
        app.suspend()
        assert app.suspended
        time.sleep(0.1)
        before = app.cpu_time()
        time.sleep(0.5)
        during = app.cpu_time() - before
        app.resume()
        assert not app.suspended
        assert during < 0.1
        assert wait_for(lambda: app.cpu_time() >= before + 0.2), "the app did not run again after resume"
    finally:
        outcome = app.kill("test over")
    assert outcome.message.startswith("test over")


COUNTER_APP = """
    import json, os, time
    checkpoint = os.environ["TESSERA_CHECKPOINT"]
    state = {"i": 0, "total": 0, "starts": 0}
    if os.path.exists(checkpoint):
        with open(checkpoint) as handle:
            state = json.load(handle)
    state["starts"] += 1
    resumed_at = state["i"]
    n = int(open(os.environ["TESSERA_INPUT"]).read())
    while state["i"] < n:
        state["i"] += 1
        state["total"] += state["i"]
        progress = os.environ["TESSERA_PROGRESS"]
        for path, text in ((checkpoint, json.dumps(state)), (progress, str(state["i"] / n))):
            with open(path + ".tmp", "w") as handle:
                handle.write(text)
            os.replace(path + ".tmp", path)
        time.sleep(0.05)
    with open(os.environ["TESSERA_OUTPUT"], "w") as handle:
        json.dump({"total": state["total"], "starts": state["starts"], "resumed_at": resumed_at}, handle)
"""


def test_stop_then_start_again_resumes_from_the_checkpoint(tmp_path):
    first = start(tmp_path, COUNTER_APP, input="20")
    assert wait_for(lambda: first.progress() >= 0.25), "the app made no progress"
    first.stop()
    assert first.poll() is None and first.wait(0.1) is None
    assert not (first.slot / "output").exists()

    second = AppProcess.start(entrypoint=tmp_path / "app-slot" / "main.py", slot=first.slot, limits=limits())
    outcome = second.wait(10)
    assert outcome is not None and outcome.status == "success", outcome
    result = output(second)
    assert result["total"] == sum(range(1, 21))
    assert result["starts"] == 2 and 5 <= result["resumed_at"] < 20


@linux_only
def test_kill_leftover_kills_the_slots_app_and_spares_anything_else(tmp_path):
    app = start(
        tmp_path,
        """
        import os, time
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
        with open("child.tmp", "w") as handle:
            handle.write(str(child))
        os.replace("child.tmp", "child")
        time.sleep(30)
        """,
    )
    stranger = subprocess.Popen(["sleep", "30"], cwd=str(tmp_path))
    other_slot = tmp_path / "other"
    other_slot.mkdir()
    try:
        assert wait_for(lambda: (app.slot / "child").exists())
        child = int((app.slot / "child").read_text())
        assert kill_leftover(stranger.pid, app.slot) is False
        assert kill_leftover(app.pid, other_slot) is False
        assert stranger.poll() is None and app.poll() is None

        assert kill_leftover(app.pid, app.slot) is True
        outcome = app.wait(5)
        assert outcome is not None and outcome.exit_code == -signal.SIGKILL
        assert wait_for(lambda: gone(child))
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(5)
        app.kill("test over")


PARENT_HELPER = """
    import sys, time
    from pathlib import Path
    from tessera_client.sandbox import AppProcess, Limits
    work = Path(sys.argv[1])
    app = AppProcess.start(entrypoint=work / "main.py", slot=work / "slot",
                           limits=Limits(10, 1 << 30, 1 << 20, 16, time.time() + 30))
    (work / "pid.tmp").write_text(str(app.pid))
    (work / "pid.tmp").replace(work / "pid")
    time.sleep(30)
"""


@linux_only
def test_the_app_dies_when_the_client_is_killed(tmp_path):
    write_app(tmp_path, "import time\ntime.sleep(30)\n")
    (tmp_path / "slot").mkdir()
    (tmp_path / "helper.py").write_text(textwrap.dedent(PARENT_HELPER))
    client = subprocess.Popen(
        [sys.executable, str(tmp_path / "helper.py"), str(tmp_path)], cwd=str(CLIENT_DIR)
    )
    try:
        assert wait_for(lambda: (tmp_path / "pid").exists(), timeout=10), "the helper client did not start"
        pid = int((tmp_path / "pid").read_text())
        assert not gone(pid)
        # The launcher reports before it execs the app; mid-exec the kernel shows an empty environ.
        slot_variable = f"TESSERA_SLOT={tmp_path / 'slot'}".encode()
        assert wait_for(lambda: slot_variable in Path(f"/proc/{pid}/environ").read_bytes(), timeout=5)
        cgroup = _pids_cgroup_of(pid)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(5)
    assert wait_for(lambda: gone(pid)), "the app outlived the client"

    # The killed client could not remove its app's pids cgroup: the next client to start an app does.
    if cgroup is not None:
        assert cgroup.exists()
        run(tmp_path, SUCCESS_APP, slot_name="next")
        assert not cgroup.exists()


def _pids_cgroup_of(pid: int):
    """The folder of the v1 pids cgroup holding ``pid``, if the sandbox put it in one of its own."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(",") and "/tessera-" in path:
            found = list(Path("/sys/fs/cgroup").glob(f"*pids*{path}"))
            return found[0] if found else None
    return None
