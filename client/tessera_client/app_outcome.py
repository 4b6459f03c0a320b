"""How a run of an app ended, in plain words for the volunteer and the project.

The sandbox only knows an exit code, the CPU time and the end of the app's stderr; this module
turns them into the reason a volunteer can act on ("out of memory (limit 512 MiB)"). The wasm
runner says its own reason ("used its fuel bound of …") on the last line it writes to stderr.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from tessera_client._wasm_state import REASON_PREFIX

MiB = 1024 * 1024
RUNNER_REASON = REASON_PREFIX.encode()  # how the wasm runner's verdict starts


@dataclass(frozen=True)
class Outcome:
    """One run's end, as the journal keeps it."""

    status: str  # "success" | "client_error"
    exit_code: int  # negative = killed by that signal
    cpu_time: float  # CPU seconds (user+sys) of this run of the app, children it waited for included
    message: str  # plain words why it failed ('' on success)


def explain_failure(
    code: int, cpu: float, *, cpu_limit: int, memory_limit: int, launch_error: str, stderr: bytes
) -> str:
    """Why an app that exited with ``code`` (negative: the signal) and no output failed."""
    memory = f"out of memory (limit {memory_limit // MiB} MiB)"
    signum = -code if code < 0 else 0
    if launch_error:
        return f"the sandbox could not start the app: {launch_error}"
    reason = runner_reason(stderr) if code > 0 else ""
    if reason:
        return reason
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu >= cpu_limit - 0.1):
        return f"CPU time limit of {cpu_limit} s exceeded"
    if signum == getattr(signal, "SIGXFSZ", None) or (code > 0 and b"File too large" in stderr):
        return "file size limit exceeded"  # Python ignores SIGXFSZ, so the write fails with EFBIG
    if code > 0 and b"MemoryError" in stderr:
        return memory
    if signum == signal.SIGABRT and b"memory allocation of" in stderr:
        return memory  # Rust's words (wasmtime in the wasm runner) before it aborts
    if signum in (signal.SIGSEGV, signal.SIGKILL):
        return f"killed by signal {signal_name(signum)}, probably {memory}"
    if code == 0:
        return "the app exited without writing its output"
    if code > 0:
        return f"the app exited with code {code}"
    return f"killed by signal {signal_name(signum)}"


def runner_reason(stderr: bytes) -> str:
    """The wasm runner's verdict: the last line of ``stderr`` that starts with its prefix."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(RUNNER_REASON):
            return line[len(RUNNER_REASON) :].decode("utf-8", errors="replace").strip()
    return ""


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; the number itself for a signal Python does not know."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
