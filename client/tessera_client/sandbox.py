"""Running one task's app as a separate, sandboxed process.

Each task runs in its own slot folder (see the app contract): ``python -E -s <entrypoint>``, or
a native app's executable itself, with cwd = slot and a clean environment, at the lowest CPU
priority, under resource limits, in a new session (so suspending or killing the group reaches the
app's children too) and, where Linux allows it, without network. The lock-down happens in
:mod:`tessera_client._launch`, a fresh interpreter that then execve's the app, because a threaded
client must not run Python code between fork and exec.

The client keeps the pid, polls it without blocking (enforcing the wall-clock deadline) and gets
an :class:`~tessera_client.app_outcome.Outcome` whose message says in plain words why the app
failed. The process limit's cgroup is in :mod:`tessera_client.pids_cgroup`; killing what a
crashed client left running, in :mod:`tessera_client.leftover_apps`.

Start tasks from the client's main thread: PR_SET_PDEATHSIG, which kills the app when the client
is killed, fires when the *thread* that started it exits, not the whole client.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera_client.app_contract import STDERR_NAME, STDOUT_NAME, clean_env, read_progress
from tessera_client.app_outcome import Outcome, explain_failure
from tessera_client.pids_cgroup import make_pids_cgroup, remove_cgroup
from tessera_client.procfs import cpu_seconds

LAUNCHER = Path(__file__).with_name("_launch.py")
TAIL_BYTES = 1024
LAUNCH_TIMEOUT = 10.0  # seconds for the launcher to lock itself down and exec the app
CPU_GRACE = 1.0  # beyond the limit before poll() kills a group whose children shared the work
_LINUX = sys.platform.startswith("linux")
_CAN_PEEK = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


@dataclass(frozen=True)
class Limits:
    """What one task's app may use; the sandbox enforces each."""

    cpu_seconds: int  # RLIMIT_CPU of the app (SIGXCPU); poll() also checks the group's total
    memory_bytes: int  # RLIMIT_AS (RLIMIT_DATA instead when reserved_bytes is set)
    file_bytes: int  # RLIMIT_FSIZE; the app's stdout.txt and stderr.txt count too
    processes: int  # processes (threads, on Linux) the app may have, itself included
    wall_deadline: float  # unix time; past it the task is killed ("deadline passed")
    # Address space the app reserves but cannot use (a wasm memory's guard region): RLIMIT_AS is
    # memory_bytes + reserved_bytes, and RLIMIT_DATA (what is writable) memory_bytes.
    reserved_bytes: int = 0
    # The cores the task occupies (an ``mt`` app version's, else 1; a fraction for an app that
    # mostly waits): the scheduler counts them, and cpu_seconds and processes already allow for them.
    cores: float = 1.0

    @property
    def threads(self) -> int:
        """How many threads the app is told to keep busy (``TESSERA_CORES``)."""
        return whole_cores(self.cores)


def whole_cores(cores: float) -> int:
    """The threads a task on ``cores`` may keep busy: whole cores (never more than it occupies),
    at least one."""
    return max(1, int(cores))


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
        native: bool = False,
        isolate_network: bool = True,
    ) -> AppProcess:
        """Start the app; returns once it runs (or failed to start, which poll() then reports).

        ``native``: ``entrypoint`` is an executable to run as it is, not a Python file for ``python``.
        """
        slot = Path(slot).resolve()
        argv, cores = _command(Path(entrypoint).resolve(), limits, python=python, native=native)
        (slot / "tmp").mkdir(parents=True, exist_ok=True)
        cgroup = make_pids_cgroup(limits.processes)
        _trim_logs(slot, limits.file_bytes)
        read_end, write_end = os.pipe()
        args = _launch_args(
            argv,
            slot,
            limits,
            env=clean_env(slot, cores=cores),
            isolate_network=isolate_network,
            cgroup=cgroup,
            status_fd=write_end,
        )
        try:
            popen, stderr_start = _spawn(slot, args)
        except BaseException:
            os.close(read_end)
            remove_cgroup(cgroup)
            raise
        finally:
            os.close(write_end)
        app = cls(popen, slot, limits, stderr_start)
        app._cgroup = cgroup
        try:
            status = _read_status(read_end, LAUNCH_TIMEOUT)
        finally:
            os.close(read_end)
        app._take_launch_status(status)
        return app

    def _take_launch_status(self, status: dict | None) -> None:
        """Note what the launcher reported (or, if it said nothing in time, give up on it)."""
        if status is None:
            self.kill(f"the sandbox did not start the app within {LAUNCH_TIMEOUT:g} s")
            return
        self.network_isolated = bool(status.get("network_isolated"))
        self.network_note = str(status.get("network_note", ""))
        self.process_limit_enforced = status.get("process_limit") is not None
        self._launch_error = str(status.get("error", ""))

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
        return cpu_seconds(self.pid)

    def progress(self) -> float:
        """The app's own estimate of its fraction done (see the app contract)."""
        return read_progress(self.slot)

    # -- controlling ---------------------------------------------------------------------------

    def suspend(self) -> None:
        """SIGSTOP the app and its children (the CPU throttle, or the user needs the computer)."""
        if self._signal_group(signal.SIGSTOP):
            self._suspended = True

    def resume(self) -> None:
        """SIGCONT the app and its children after :meth:`suspend`."""
        if self._signal_group(signal.SIGCONT):
            self._suspended = False

    @property
    def suspended(self) -> bool:
        """Whether the app is stopped by :meth:`suspend` (and still has to finish)."""
        return self._suspended and self._outcome is None and not self._stopped

    def kill(self, message: str) -> Outcome:
        """End the app now as a client error that says ``message`` (plus the tail of its stderr)."""
        if self._outcome is not None:
            return self._outcome
        code, cpu = self._reap_now() if not self._reaped else (-signal.SIGKILL, 0.0)
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
        return self._reap_now()

    def _reap_now(self) -> tuple[int, float]:
        """Wait for the app's exit and kill what it left behind in its group."""
        self._signal_group(signal.SIGKILL)
        _, status, usage = os.wait4(self.pid, 0)
        return self._reaped_with(status, usage)

    def _reaped_with(self, status: int, usage: object) -> tuple[int, float]:
        self._reaped = True
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code  # so subprocess does not try to reap it again
        remove_cgroup(self._cgroup)
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
        message = explain_failure(
            code,
            cpu,
            cpu_limit=self.limits.cpu_seconds,
            memory_limit=self.limits.memory_bytes,
            launch_error=self._launch_error,
            stderr=self._new_stderr(64 * 1024),
        )
        return Outcome("client_error", code, cpu, self._with_tail(message))


def _command(entrypoint: Path, limits: Limits, *, python: str, native: bool) -> tuple[list[str], int | None]:
    """The app's argv, and the cores its environment names (None: not named)."""
    if native:
        return [str(entrypoint)], limits.threads
    # A Python app on one core keeps the environment it always had.
    cores = limits.threads if limits.threads > 1 else None
    return [_absolute_program(python), "-E", "-s", str(entrypoint)], cores


def _launch_args(
    argv: list[str],
    slot: Path,
    limits: Limits,
    *,
    env: dict[str, str],
    isolate_network: bool,
    cgroup: Path | None,
    status_fd: int,
) -> dict[str, Any]:
    """What the launcher needs to lock itself down and become the app (it imports nothing of ours)."""
    return {
        "argv": argv,
        "slot": str(slot),
        "env": env,
        "cpu_seconds": limits.cpu_seconds,
        "memory_bytes": limits.memory_bytes,
        "reserved_bytes": limits.reserved_bytes,
        "file_bytes": limits.file_bytes,
        "processes": limits.processes,
        "isolate_network": isolate_network,
        "cgroup": str(cgroup) if cgroup else None,
        "status_fd": status_fd,
        "parent": os.getpid(),
    }


def _trim_logs(slot: Path, file_bytes: int) -> None:
    """The app's stdout.txt and stderr.txt are appended across restarts, but not without bound."""
    for path in (slot / STDOUT_NAME, slot / STDERR_NAME):
        if path.exists() and path.stat().st_size > file_bytes // 4:
            path.write_bytes(b"")


def _spawn(slot: Path, args: dict[str, Any]) -> tuple[subprocess.Popen, int]:
    """Start the launcher in a new session; returns it and where this run's stderr begins."""
    with (slot / STDOUT_NAME).open("ab") as out, (slot / STDERR_NAME).open("ab") as err:
        stderr_start = err.tell()
        popen = subprocess.Popen(
            [sys.executable, "-I", str(LAUNCHER), json.dumps(args)],
            cwd=str(slot),
            env=args["env"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(args["status_fd"],),
            close_fds=True,
            start_new_session=True,
        )
    return popen, stderr_start


def _absolute_program(program: str) -> str:
    """execve wants a path, not a name to look up."""
    if os.sep in program:
        return str(Path(program).absolute())
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
