"""tessera_launcher (coordinator/boinc/launcher): built with gcc, run in a slot folder as a stock
BOINC client runs an app version's main program, with this test playing the client's side of
the shared memory (boinc_mmap_file): heartbeats, process control and the app's status."""

from __future__ import annotations

import contextlib
import importlib.util
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coordinator.boinc import launcher

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not LINUX, reason="these tests read /proc and build with gcc (Linux)")

# lib/app_ipc.h SHARED_MEM: 8 channels of 1024 bytes, in this order.
CHANNEL_SIZE = 1024
CONTROL_REQUEST, HEARTBEAT, APP_STATUS = 0, 4, 5
SHMEM_SIZE = 8 * CHANNEL_SIZE
EXIT_ABORTED_BY_CLIENT = 194
STATUS_FORMAT = re.compile(
    r"<current_cpu_time>(\S+)</current_cpu_time>\n"
    r"<checkpoint_cpu_time>(\S+)</checkpoint_cpu_time>\n"
    r"<fraction_done>(\S+)</fraction_done>\n"
)

# The app under test follows the Tessera app contract. Input: "<steps> <ms of CPU per step>
# <step after which its first run exits 75> <exit code at the end, or -signal>". It checkpoints
# and writes its progress after each step, and on success writes its environment to env.txt.
TEST_APP = r"""
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
extern char **environ;

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void put(const char *path, const char *text) {
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *out = fopen(temporary, "w");
    if (!out || fputs(text, out) < 0 || fclose(out) != 0 || rename(temporary, path) != 0) exit(2);
}

int main(void) {
    long steps, ms, stop_at, fail, step = 0, starts = 0;
    char text[256];
    FILE *in = fopen(getenv("TESSERA_INPUT"), "r");
    if (!in || fscanf(in, "%ld %ld %ld %ld", &steps, &ms, &stop_at, &fail) != 4) return 2;
    fclose(in);
    FILE *saved = fopen(getenv("TESSERA_CHECKPOINT"), "r");
    if (saved && fscanf(saved, "%ld %ld", &step, &starts) != 2) return 2;
    if (saved) fclose(saved);
    fprintf(stderr, "test app: run %ld from step %ld\n", ++starts, step);
    while (step < steps) {
        volatile unsigned long x = 1;
        for (double until = cpu() + ms / 1000.0; cpu() < until;)
            for (int i = 0; i < 20000; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
        step++;
        snprintf(text, sizeof text, "%ld %ld\n", step, starts);
        put(getenv("TESSERA_CHECKPOINT"), text);
        snprintf(text, sizeof text, "%.6f\n", (double)step / steps);
        put(getenv("TESSERA_PROGRESS"), text);
        if (step == stop_at && starts == 1) return 75;
    }
    if (fail < 0) raise((int)-fail);
    if (fail > 0) {
        fprintf(stderr, "test app: failing on purpose\n");
        return (int)fail;
    }
    FILE *env = fopen("env.txt", "w");
    for (char **name = environ; *name; name++) fprintf(env, "%s\n", *name);
    fclose(env);
    snprintf(text, sizeof text, "steps=%ld starts=%ld\n", steps, starts);
    put(getenv("TESSERA_OUTPUT"), text);
    printf("test app: done\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def gcc() -> str:
    found = shutil.which("gcc")
    if found is None:
        pytest.skip("no gcc on PATH to build the launcher (Debian: apt-get install gcc)")
    return found


@pytest.fixture(scope="module")
def launcher_binary(gcc, tmp_path_factory) -> Path:
    """The launcher built for this computer, with -Wall -Wextra -Werror."""
    return launcher.build(None, tmp_path_factory.mktemp("launcher") / "tessera_launcher", cache=None)


@pytest.fixture(scope="module")
def test_app(gcc, tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("app")
    (folder / "app.c").write_text(TEST_APP)
    subprocess.run(
        [gcc, "-O1", "-Wall", "-Werror", "-o", "app", "app.c"],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return (folder / "app").read_bytes()


class FakeClient:
    """The BOINC client's side of one slot: its shared memory, heartbeats every 0.5 s (unless
    told not to), and every app_status message the launcher sends, with when it came."""

    def __init__(self, slot: Path, *, heartbeats: bool = True) -> None:
        path = slot / "boinc_mmap_file"
        path.write_bytes(bytes(SHMEM_SIZE))  # the client makes it zero-filled (create_shmem_mmap)
        with path.open("r+b") as handle:
            self.memory = mmap.mmap(handle.fileno(), SHMEM_SIZE)
        self.heartbeats = heartbeats
        self.statuses: list[tuple[float, dict[str, float]]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def send(self, channel: int, text: str) -> bool:
        start = channel * CHANNEL_SIZE
        with self.lock:
            if self.memory[start]:
                return False
            self.memory[start + 1 : start + 2 + len(text)] = text.encode() + b"\0"
            self.memory[start] = 1
        return True

    def receive(self, channel: int) -> str | None:
        start = channel * CHANNEL_SIZE
        with self.lock:
            if not self.memory[start]:
                return None
            text = self.memory[start + 1 : start + CHANNEL_SIZE].split(b"\0")[0].decode()
            self.memory[start] = 0
        return text

    def control(self, message: str, timeout: float = 10) -> None:
        """Send a process-control message and wait until the launcher has taken it."""
        assert wait_for(lambda: self.send(CONTROL_REQUEST, message), timeout), "the channel stayed full"
        assert wait_for(lambda: not self.memory[CONTROL_REQUEST * CHANNEL_SIZE], timeout), (
            f"the launcher did not take {message}"
        )

    def _run(self) -> None:
        next_heartbeat = 0.0
        while not self.done.is_set():
            if self.heartbeats and time.monotonic() >= next_heartbeat:
                # As the client sends it (client/app_control.cpp send_heartbeats).
                self.send(HEARTBEAT, "<heartbeat/><wss>1.0e+06</wss><max_wss>1.0e+09</max_wss>")
                next_heartbeat = time.monotonic() + 0.5
            self.take_status()
            time.sleep(0.05)

    def take_status(self) -> None:
        text = self.receive(APP_STATUS)
        if text is not None:
            match = STATUS_FORMAT.fullmatch(text)
            assert match, f"not an app_status message: {text!r}"
            values = dict(zip(("cpu", "checkpoint_cpu", "fraction"), map(float, match.groups()), strict=True))
            self.statuses.append((time.monotonic(), values))

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.take_status()  # the last one, sent as the launcher ended
        self.memory.close()


def wait_for(condition, timeout: float = 15.0) -> bool:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.02)
    return True


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the state on (field 3), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = proc_stat(pid)
    assert fields is not None, f"process {pid} is gone"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gone(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class Task:
    """One slot with the test app in it, as copy_file leaves it (no execute bit), and the
    launcher started in it as the client starts a main program."""

    def __init__(self, root: Path, launcher_binary: Path, app: bytes, app_input: str, **env: str) -> None:
        self.slot = root / "slots" / "0"
        self.slot.mkdir(parents=True)
        (self.slot / "input").write_text(app_input)
        (self.slot / "tessera_app").write_bytes(app)
        self.launcher_binary = launcher_binary
        self.env = env
        self.process: subprocess.Popen | None = None
        self.app_pids: set[int] = set()

    def start(self, *args: str) -> subprocess.Popen:
        self.process = subprocess.Popen(
            [str(self.launcher_binary), *args],
            cwd=self.slot,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self.process

    def app_pid(self, timeout: float = 15) -> int:
        """The running app: the launcher's child."""
        assert self.process is not None
        launcher_pid = self.process.pid
        found: list[int] = []

        def started() -> bool:
            found[:] = children(launcher_pid)
            return bool(found)

        assert wait_for(started, timeout), "the launcher started no app"
        self.app_pids.update(found)
        return found[0]

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launcher did not end within {timeout} s")

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.app_pids.update(children(self.process.pid))
            self.process.kill()
            self.process.wait(10)
        for pid in self.app_pids:
            if not gone(pid):
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)

    def file(self, name: str) -> Path:
        return self.slot / name

    def stderr_txt(self) -> str:
        return self.file("stderr.txt").read_text()


@pytest.fixture()
def task(tmp_path, launcher_binary, test_app):
    """Makes Tasks; whatever they started is killed afterwards."""
    made: list[Task] = []

    def make(app_input: str, **env: str) -> Task:
        made.append(Task(tmp_path / str(len(made)), launcher_binary, test_app, app_input, **env))
        return made[-1]

    yield make
    for each in made:
        each.cleanup()


@pytest.fixture()
def clients():
    made: list[FakeClient] = []

    def make(slot: Path, **options) -> FakeClient:
        made.append(FakeClient(slot, **options))
        return made[-1]

    yield make
    for client in made:
        if not client.done.is_set():
            client.stop()


LONG_RUN = "400 100 0 0\n"  # 40 s of CPU: the tests stop it long before


def test_success_reports_cpu_and_progress_and_writes_the_finish_file(task, clients):
    # A 3 s heartbeat limit over a run that takes longer: the client's heartbeats keep it going.
    job = task("12 250 0 0\n", TESSERA_LAUNCHER_HEARTBEAT_SECONDS="3")
    client = clients(job.slot)
    job.start()
    assert job.wait() == 0
    client.stop()

    assert job.file("output").read_text() == "steps=12 starts=1\n"
    assert job.file("boinc_finish_called").read_text() == "0\n"
    stderr = job.stderr_txt()
    assert "test app: run 1 from step 0" in stderr
    assert "test app: done" in stderr  # its stdout too
    statuses = [values for _, values in client.statuses]
    assert len(statuses) >= 3, statuses
    cpus = [status["cpu"] for status in statuses]
    assert cpus == sorted(cpus) and cpus[-1] > cpus[0], cpus
    assert cpus[-1] >= 2.5  # 12 steps of 0.25 s
    assert statuses[-1]["fraction"] == 1.0
    assert 0 < statuses[-1]["checkpoint_cpu"] <= cpus[-1]
    fractions = [status["fraction"] for status in statuses]
    assert fractions == sorted(fractions)


def test_the_app_gets_exactly_the_contract_environment(task, clients):
    job = task("1 10 0 0\n")
    clients(job.slot)
    job.start()
    assert job.wait() == 0
    slot = str(job.slot)
    env = dict(line.split("=", 1) for line in job.file("env.txt").read_text().splitlines())
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": slot,
        "TMPDIR": f"{slot}/tmp",
        "LANG": "C.UTF-8",
        "TESSERA_API": "1",
        "TESSERA_SLOT": slot,
        "TESSERA_INPUT": f"{slot}/input",
        "TESSERA_OUTPUT": f"{slot}/output",
        "TESSERA_CHECKPOINT": f"{slot}/checkpoint",
        "TESSERA_PROGRESS": f"{slot}/progress",
        "TESSERA_CORES": "1",
        "OMP_NUM_THREADS": "1",
    }
    assert job.file("tmp").is_dir()


def test_exit_75_runs_the_app_again_from_its_checkpoint(task, clients):
    job = task("4 50 2 0\n")
    clients(job.slot)
    job.start()
    assert job.wait() == 0
    assert job.file("output").read_text() == "steps=4 starts=2\n"
    assert job.file("boinc_finish_called").read_text() == "0\n"
    assert "test app: run 2 from step 2" in job.stderr_txt()


def test_a_failing_app_fails_the_task_with_its_exit_code(task, clients):
    job = task("1 10 0 3\n")
    clients(job.slot)
    job.start()
    assert job.wait() == 3
    assert not job.file("boinc_finish_called").exists()
    stderr = job.stderr_txt()
    assert "test app: failing on purpose" in stderr
    assert "tessera_launcher: the app failed: exit code 3" in stderr


def test_an_app_killed_by_a_signal_fails_with_128_plus_the_signal(task, clients):
    job = task(f"1 10 0 -{int(signal.SIGSEGV)}\n")
    clients(job.slot)
    job.start()
    assert job.wait() == 128 + signal.SIGSEGV
    assert not job.file("boinc_finish_called").exists()


def test_suspend_stops_the_app_and_resume_continues_it(task, clients):
    job = task(LONG_RUN)
    client = clients(job.slot)
    job.start()
    app = job.app_pid()
    assert wait_for(lambda: cpu_seconds(app) > 0.2), "the app did not start working"

    client.control("<suspend/>")
    assert wait_for(lambda: proc_stat(app)[0] == "T", 5), "the app was not stopped"
    before, statuses_before = cpu_seconds(app), len(client.statuses)
    time.sleep(1.5)
    assert cpu_seconds(app) - before <= 0.05
    assert wait_for(lambda: len(client.statuses) > statuses_before, 5), "no app_status while suspended"

    client.control("<resume/>")
    resumed = cpu_seconds(app)
    assert wait_for(lambda: cpu_seconds(app) > resumed + 0.2), "the app did not run again"
    client.control("<quit/>")
    assert job.wait() == 0


def test_abort_kills_the_app_and_fails_the_task(task, clients):
    job = task(LONG_RUN)
    client = clients(job.slot)
    job.start()
    app = job.app_pid()
    client.control("<abort/>")
    assert job.wait() == EXIT_ABORTED_BY_CLIENT
    assert wait_for(lambda: gone(app)), "the app is still running"
    assert not job.file("boinc_finish_called").exists()
    assert "aborted by the client" in job.stderr_txt()


def test_quit_kills_the_app_and_leaves_no_finish_file(task, clients):
    job = task(LONG_RUN)
    client = clients(job.slot)
    job.start()
    app = job.app_pid()
    client.control("<suspend/>")  # the client may quit a suspended task too
    client.control("<quit/>")
    assert job.wait() == 0
    assert wait_for(lambda: gone(app)), "the app is still running"
    assert not job.file("boinc_finish_called").exists()


def test_without_heartbeats_the_launcher_stops_the_app(task, clients):
    job = task(LONG_RUN, TESSERA_LAUNCHER_HEARTBEAT_SECONDS="2")
    clients(job.slot, heartbeats=False)
    started = time.monotonic()
    job.start()
    app = job.app_pid()
    assert job.wait(30) == 0
    assert time.monotonic() - started >= 2
    assert wait_for(lambda: gone(app)), "the app is still running"
    assert not job.file("boinc_finish_called").exists()
    assert "no heartbeat from the client" in job.stderr_txt()


def test_sigterm_stops_the_app_without_finishing(task, clients):
    job = task(LONG_RUN)
    clients(job.slot)
    process = job.start()
    app = job.app_pid()
    process.send_signal(signal.SIGTERM)
    assert job.wait() == 0
    assert wait_for(lambda: gone(app)), "the app is still running"
    assert not job.file("boinc_finish_called").exists()


def test_standalone_without_shared_memory_runs_the_app_named_on_the_command_line(task):
    job = task("3 20 0 0\n")
    job.file("tessera_app").rename(job.file("science"))
    job.start("science")
    assert job.wait() == 0
    assert not job.file("boinc_mmap_file").exists()
    assert job.file("output").read_text() == "steps=3 starts=1\n"
    assert job.file("boinc_finish_called").read_text() == "0\n"


def test_init_data_gives_earlier_cpu_time_and_the_client_whose_end_stops_the_app(task, clients):
    job = task(LONG_RUN)
    stand_in = subprocess.Popen(["sleep", "120"])  # the client's process
    try:
        # As the client writes them (lib/app_ipc.cpp write_init_data_file).
        job.file("init_data.xml").write_text(
            "<app_init_data>\n<slot>0</slot>\n"
            f"<client_pid>{stand_in.pid}</client_pid>\n<wu_cpu_time>100.000000</wu_cpu_time>\n"
            "</app_init_data>\n"
        )
        client = clients(job.slot)
        job.start()
        app = job.app_pid()
        assert wait_for(lambda: len(client.statuses) >= 2), "no app_status"
        for _, status in client.statuses:
            assert status["cpu"] >= 100 and status["checkpoint_cpu"] >= 100
        stand_in.kill()
        stand_in.wait(10)
        assert job.wait(30) == 0
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
            stand_in.wait(10)
    assert wait_for(lambda: gone(app)), "the app is still running"
    assert not job.file("boinc_finish_called").exists()
    assert "the client's process is gone" in job.stderr_txt()


def test_builds_are_cached_by_content(gcc, tmp_path, monkeypatch):
    first = launcher.build(None, tmp_path / "a" / "tessera_launcher", cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(launcher, "_compile", no_compiling)
    second = launcher.build(None, tmp_path / "b" / "tessera_launcher", cache=tmp_path / "cache")
    assert second.read_bytes() == first.read_bytes()
    assert os.access(second, os.X_OK)


def test_unknown_platforms_are_refused(tmp_path):
    with pytest.raises(launcher.LauncherBuildError, match="no launcher target for windows_x86_64"):
        launcher.build("windows_x86_64", tmp_path / "tessera_launcher")


ELF_MACHINES = {"x86_64-pc-linux-gnu": 0x3E, "aarch64-unknown-linux-gnu": 0xB7}
PT_INTERP = 3


@pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="ziglang is not installed")
@pytest.mark.parametrize("platform", sorted(ELF_MACHINES))
def test_zig_builds_static_linux_binaries(platform, tmp_path):
    data = launcher.build(platform, tmp_path / "tessera_launcher", cache=None).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1  # 64-bit, little-endian
    assert int.from_bytes(data[18:20], "little") == ELF_MACHINES[platform]
    program_headers = int.from_bytes(data[32:40], "little")
    size, count = int.from_bytes(data[54:56], "little"), int.from_bytes(data[56:58], "little")
    types = [
        int.from_bytes(data[program_headers + i * size : program_headers + i * size + 4], "little")
        for i in range(count)
    ]
    assert types and PT_INTERP not in types  # no dynamic loader: static


MACHO_CPUS = {"x86_64-apple-darwin": 0x01000007, "arm64-apple-darwin": 0x0100000C}


@pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="ziglang is not installed")
@pytest.mark.parametrize("platform", sorted(MACHO_CPUS))
def test_zig_builds_macos_binaries(platform, tmp_path):
    data = launcher.build(platform, tmp_path / "tessera_launcher", cache=None).read_bytes()
    assert int.from_bytes(data[:4], "little") == 0xFEEDFACF  # 64-bit Mach-O
    assert int.from_bytes(data[4:8], "little") == MACHO_CPUS[platform]
