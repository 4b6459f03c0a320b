"""Running one task's app as a separate, sandboxed process.

Each task runs in its own slot folder (see the app contract): ``python -E -s <entrypoint>`` with
cwd = slot and a clean environment, at the lowest CPU priority, under resource limits, in a new
session (so suspending or killing the group reaches the app's children too) and, where Linux
allows it, without network. The lock-down happens in :mod:`tessera_client._launch`, a fresh
interpreter that then execve's the app, because a threaded client must not run Python code
between fork and exec.

The client keeps the pid, polls it without blocking (enforcing the wall-clock deadline) and gets
an :class:`Outcome` whose message says in plain words why the app failed.

Start tasks from the client's main thread: PR_SET_PDEATHSIG, which kills the app when the client
is killed, fires when the *thread* that started it exits, not the whole client.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).with_name("_launch.py")
STDOUT_NAME = "stdout.txt"
STDERR_NAME = "stderr.txt"
TAIL_BYTES = 1024
LAUNCH_TIMEOUT = 10.0  # seconds for the launcher to lock itself down and exec the app
CPU_GRACE = 1.0  # beyond the limit before poll() kills a group whose children shared the work
MiB = 1024 * 1024
_LINUX = sys.platform.startswith("linux")
_CAN_PEEK = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")
_cgroup_names = itertools.count()


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int  # RLIMIT_CPU of the app (SIGXCPU); poll() also checks the group's total
    memory_bytes: int  # RLIMIT_AS
    file_bytes: int  # RLIMIT_FSIZE; the app's stdout.txt and stderr.txt count too
    processes: int  # processes (threads, on Linux) the app may have, itself included
    wall_deadline: float  # unix time; past it the task is killed ("deadline passed")


@dataclass(frozen=True)
class Outcome:
    status: str  # "success" | "client_error"
    exit_code: int  # negative = killed by that signal
    cpu_time: float  # CPU seconds (user+sys) of this run of the app, children it waited for included
    message: str  # plain words why it failed ('' on success)


def clean_env(slot: Path) -> dict[str, str]:
    """The app's whole environment, exactly as the app contract lists it."""
    slot = Path(slot)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(slot),
        "TMPDIR": str(slot / "tmp"),
        "LANG": "C.UTF-8",
        "TESSERA_API": "1",
        "TESSERA_SLOT": str(slot),
        "TESSERA_INPUT": str(slot / "input"),
        "TESSERA_OUTPUT": str(slot / "output"),
        "TESSERA_CHECKPOINT": str(slot / "checkpoint"),
        "TESSERA_PROGRESS": str(slot / "progress"),
    }


def read_progress(slot: Path) -> float:
    """The app's own estimate of its fraction done, 0..1; 0.0 if it wrote none or nonsense."""
    try:
        value = float((Path(slot) / "progress").read_text(encoding="utf-8", errors="replace").strip())
    except (OSError, ValueError):
        return 0.0
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


class AppProcess:
    """One running app. Create it with :meth:`start`."""

    def __init__(self, popen: subprocess.Popen, slot: Path, limits: Limits, stderr_start: int) -> None:
        self._popen = popen
        self.pid: int = popen.pid
        self.slot = slot
        self.limits = limits
        self.network_isolated = False
        self.network_note = ""  # why the network could not be cut, when it could not
        self.process_limit_enforced = False  # the process limit really binds (cgroup, or non-root rlimit)
        self._stderr_start = stderr_start
        self._cgroup: Path | None = None
        self._launch_error = ""
        self._suspended = False
        self._reaped = False
        self._stopped = False
        self._outcome: Outcome | None = None

    @classmethod
    def start(
        cls,
        *,
        entrypoint: Path,
        slot: Path,
        limits: Limits,
        python: str = sys.executable,
        isolate_network: bool = True,
    ) -> AppProcess:
        """Start the app; returns once it runs (or failed to start, which poll() then reports)."""
        slot = Path(slot).resolve()
        program = _absolute_program(python)
        (slot / "tmp").mkdir(parents=True, exist_ok=True)
        env = clean_env(slot)
        cgroup = _make_pids_cgroup(limits.processes)
        stdout_path, stderr_path = slot / STDOUT_NAME, slot / STDERR_NAME
        for path in (stdout_path, stderr_path):  # appended across restarts, but not without bound
            if path.exists() and path.stat().st_size > limits.file_bytes // 4:
                path.write_bytes(b"")
        read_end, write_end = os.pipe()
        args = {
            "python": program,
            "entrypoint": str(Path(entrypoint).resolve()),
            "slot": str(slot),
            "env": env,
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
            "file_bytes": limits.file_bytes,
            "processes": limits.processes,
            "isolate_network": isolate_network,
            "cgroup": str(cgroup) if cgroup else None,
            "status_fd": write_end,
            "parent": os.getpid(),
        }
        try:
            with stdout_path.open("ab") as out, stderr_path.open("ab") as err:
                stderr_start = err.tell()
                popen = subprocess.Popen(
                    [sys.executable, "-I", str(LAUNCHER), json.dumps(args)],
                    cwd=str(slot),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    pass_fds=(write_end,),
                    close_fds=True,
                    start_new_session=True,
                )
        except BaseException:
            os.close(read_end)
            _remove_cgroup(cgroup)
            raise
        finally:
            os.close(write_end)
        app = cls(popen, slot, limits, stderr_start)
        app._cgroup = cgroup
        try:
            status = _read_status(read_end, LAUNCH_TIMEOUT)
        finally:
            os.close(read_end)
        if status is None:
            app.kill(f"the sandbox did not start the app within {LAUNCH_TIMEOUT:g} s")
        else:
            app.network_isolated = bool(status.get("network_isolated"))
            app.network_note = str(status.get("network_note", ""))
            app.process_limit_enforced = status.get("process_limit") is not None
            app._launch_error = str(status.get("error", ""))
        return app

    # -- watching ------------------------------------------------------------------------------

    def poll(self, now: float | None = None) -> Outcome | None:
        """The outcome once the app has ended, else None; kills it past its deadline. Never blocks.

        After :meth:`stop` there is no outcome: this returns None.
        """
        if self._outcome is not None or self._stopped:
            return self._outcome
        ended = self._reap(block=False)
        if ended is not None:
            self._outcome = self._judge(*ended)
            return self._outcome
        if (time.time() if now is None else now) >= self.limits.wall_deadline:
            return self.kill("deadline passed")
        if self.cpu_time() > self.limits.cpu_seconds + CPU_GRACE:
            return self.kill(f"CPU time limit of {self.limits.cpu_seconds} s exceeded")
        return None

    def wait(self, timeout: float) -> Outcome | None:
        """poll() until the app ends or ``timeout`` seconds pass (then None)."""
        give_up = time.monotonic() + timeout
        while True:
            outcome = self.poll()
            if outcome is not None or self._stopped or time.monotonic() >= give_up:
                return outcome
            time.sleep(min(0.05, max(0.0, give_up - time.monotonic())))

    def cpu_time(self) -> float:
        """CPU seconds so far (user+sys, children it waited for included); off Linux 0 until done."""
        if self._outcome is not None:
            return self._outcome.cpu_time
        if not _LINUX or self._reaped:
            return 0.0
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and ")"
        ticks = sum(int(fields[index]) for index in (11, 12, 13, 14))  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    def progress(self) -> float:
        return read_progress(self.slot)

    # -- controlling ---------------------------------------------------------------------------

    def suspend(self) -> None:
        """SIGSTOP the app and its children (the CPU throttle, or the user needs the computer)."""
        if self._signal_group(signal.SIGSTOP):
            self._suspended = True

    def resume(self) -> None:
        if self._signal_group(signal.SIGCONT):
            self._suspended = False

    @property
    def suspended(self) -> bool:
        return self._suspended and self._outcome is None and not self._stopped

    def kill(self, message: str) -> Outcome:
        """End the app now as a client error that says ``message`` (plus the tail of its stderr)."""
        if self._outcome is not None:
            return self._outcome
        code, cpu = self._reap(block=True) if not self._reaped else (-signal.SIGKILL, 0.0)
        self._outcome = Outcome("client_error", code, cpu, self._with_tail(message))
        return self._outcome

    def stop(self) -> None:
        """The client is shutting down: kill and reap the app, with no outcome.

        The task is not over: the next start in the same slot resumes from its checkpoint.
        """
        if self._outcome is None and not self._reaped:
            self._reap(block=True)
        self._stopped = True

    # -- inside --------------------------------------------------------------------------------

    def _signal_group(self, signum: int) -> bool:
        """Signal the app's process group; never once the leader is reaped (its pgid may be reused)."""
        if self._reaped:
            return False
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _reap(self, block: bool) -> tuple[int, float] | None:
        """Collect the app's exit (exit code, CPU seconds) and kill what it left behind in its group."""
        if not block:
            if _CAN_PEEK:
                # Peek without reaping: the zombie keeps its pgid from being reused until we killpg.
                if os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    return None
            else:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
                if pid == 0:
                    return None
                self._signal_group(signal.SIGKILL)
                return self._reaped_with(status, usage)
        self._signal_group(signal.SIGKILL)
        _, status, usage = os.wait4(self.pid, 0)
        return self._reaped_with(status, usage)

    def _reaped_with(self, status: int, usage: object) -> tuple[int, float]:
        self._reaped = True
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code  # so subprocess does not try to reap it again
        _remove_cgroup(self._cgroup)
        self._cgroup = None
        return code, usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]

    def _new_stderr(self, limit: int) -> bytes:
        """The last ``limit`` bytes this run of the app wrote to stderr.txt."""
        try:
            with (self.slot / STDERR_NAME).open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                start = self._stderr_start if size >= self._stderr_start else 0
                handle.seek(max(start, size - limit))
                return handle.read()
        except OSError:
            return b""

    def _with_tail(self, message: str) -> str:
        tail = self._new_stderr(TAIL_BYTES).decode("utf-8", errors="replace").strip()
        return f"{message}; the end of its stderr:\n{tail}" if tail else message

    def _judge(self, code: int, cpu: float) -> Outcome:
        """Put the way the app ended into plain words."""
        if code == 0 and (self.slot / "output").exists():
            return Outcome("success", 0, cpu, "")
        limits = self.limits
        memory = f"out of memory (limit {limits.memory_bytes // MiB} MiB)"
        stderr = self._new_stderr(64 * 1024)
        signum = -code if code < 0 else 0
        if self._launch_error:
            message = f"the sandbox could not start the app: {self._launch_error}"
        elif signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu >= limits.cpu_seconds - 0.1):
            message = f"CPU time limit of {limits.cpu_seconds} s exceeded"
        elif signum == getattr(signal, "SIGXFSZ", None) or (code > 0 and b"File too large" in stderr):
            message = "file size limit exceeded"  # Python ignores SIGXFSZ, so the write fails with EFBIG
        elif code > 0 and b"MemoryError" in stderr:
            message = memory
        elif signum in (signal.SIGSEGV, signal.SIGKILL):
            message = f"killed by signal {_signal_name(signum)}, probably {memory}"
        elif code == 0:
            message = "the app exited without writing its output"
        elif code > 0:
            message = f"the app exited with code {code}"
        else:
            message = f"killed by signal {_signal_name(signum)}"
        return Outcome("client_error", code, cpu, self._with_tail(message))


def kill_leftover(pid: int, slot: Path) -> bool:
    """After a client crash: kill the app left running in ``slot`` as ``pid``, and its group.

    Only processes that prove they belong to the slot die (TESSERA_SLOT in their environment, or,
    if that cannot be read, their working folder), so a pid reused by an unrelated process is safe.
    True if something was killed. Off Linux there is no way to check, so nothing is killed.
    """
    if not _LINUX:
        return False
    slot = Path(slot).resolve()
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(name) == pid or int(fields[2]) == pid:  # the leader, or a member of its process group
            members.append((int(name), _belongs_to(int(name), slot)))
    ours = [member for member, belongs in members if belongs]
    if not ours:
        return False
    if all(belongs for _, belongs in members) and any(member == pid for member in ours):
        targets = [("group", pid)]  # one signal for the whole group: nothing can fork away from it
    else:
        targets = [("process", member) for member in ours]
    killed = False
    for kind, target in targets:
        try:
            (os.killpg if kind == "group" else os.kill)(target, signal.SIGKILL)
            killed = True
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def _belongs_to(pid: int, slot: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        environ = b""
    if environ:
        return f"TESSERA_SLOT={slot}".encode() in environ.split(b"\0")
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == slot
    except OSError:
        return False


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _absolute_program(program: str) -> str:
    """execve wants a path, not a name to look up."""
    if os.sep in program:
        return str(Path(program).absolute())
    import shutil

    found = shutil.which(program)
    if found is None:
        raise FileNotFoundError(f"no program named {program!r} on PATH")
    return found


def _read_status(fd: int, timeout: float) -> dict | None:
    """What the launcher reported before exec ({} if it died first); None if it took too long."""
    data = b""
    give_up = time.monotonic() + timeout
    while True:
        left = give_up - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    try:
        status = json.loads(data.decode()) if data else {}
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


# -- the pids cgroup: a process limit that also binds root ---------------------------------------


@functools.lru_cache(maxsize=1)
def _pids_cgroup_parent() -> Path | None:
    """The folder of our own cgroup under which a task's pids cgroup can be made, if we may."""
    if not _LINUX:
        return None
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in memberships:
        hierarchy, controllers, path = line.split(":", 2)
        v1 = "pids" in controllers.split(",")
        if not v1 and hierarchy != "0":
            continue
        for mount in mounts:
            before, _, after = mount.partition(" - ")
            fields, kind = before.split(), after.split()
            if len(fields) < 5 or len(kind) < 3:
                continue
            if v1 and not (kind[0] == "cgroup" and "pids" in kind[2].split(",")):
                continue
            if not v1 and kind[0] != "cgroup2":
                continue
            relative = os.path.relpath(path, fields[3])
            if relative.startswith(".."):
                continue
            candidate = Path(fields[4]) / relative
            if not v1:
                try:
                    if "pids" not in (candidate / "cgroup.subtree_control").read_text().split():
                        continue
                except OSError:
                    continue
            if os.access(candidate, os.W_OK):
                return candidate
    return None


def _make_pids_cgroup(processes: int) -> Path | None:
    parent = _pids_cgroup_parent()
    if parent is None:
        return None
    _sweep_cgroups(parent)
    path = parent / f"tessera-{os.getpid()}-{next(_cgroup_names)}"
    try:
        path.mkdir(exist_ok=True)
        (path / "pids.max").write_text(f"{processes}\n")
    except OSError:
        _remove_cgroup(path)
        return None
    return path


def _sweep_cgroups(parent: Path) -> None:
    """Remove the cgroups of clients that died (killed, so they could not clean up after their apps)."""
    for path in parent.glob("tessera-*-*"):
        client = path.name.split("-")[1]
        if client.isdigit() and int(client) != os.getpid() and not Path(f"/proc/{client}").exists():
            _remove_cgroup(path)


def _remove_cgroup(path: Path | None) -> None:
    """Kill whatever of the app is still in its cgroup (even if it left the group), then remove it."""
    if path is None:
        return
    for _ in range(40):
        try:
            for line in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.kill(int(line), signal.SIGKILL)
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.025)
