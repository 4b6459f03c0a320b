"""Running the vendors' tools that describe this computer, and cleaning what they print.

``nvidia-smi``, ``clinfo``, ``sysctl`` and ``system_profiler`` know the hardware better than any
guess, but they are other people's programs: one may be missing, hang on a wedged driver, fail,
or print anything at all. So a tool runs only when it is on ``PATH``, for a few seconds at most,
and any failure reads as "nothing found", never as an error. What it prints is untrusted text
that goes to the project: every string is stripped of control characters and capped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence

TOOL_SECONDS = 5.0  # nvidia-smi answers in well under a second; a wedged driver never does
MAX_OUTPUT_BYTES = 1 << 20  # clinfo prints a few kB per device
MODEL_CHARS = 128
VERSION_CHARS = 32

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: object, limit: int) -> str:
    """``text`` as one short line: control and bidirectional-override characters become spaces,
    runs of spaces one, and at most ``limit`` characters are kept."""
    return " ".join(_CONTROL.sub(" ", str(text)).split())[:limit].strip()


def run_tool(args: Sequence[str], timeout: float | None = None) -> str | None:
    """What the tool printed on stdout, or None when it is not installed, fails or takes longer
    than ``timeout`` (:data:`TOOL_SECONDS`; then it and anything it started are killed). Output
    is read in the C locale, so numbers and words do not change with the volunteer's language."""
    timeout = TOOL_SECONDS if timeout is None else timeout
    program = shutil.which(args[0])
    if program is None:
        return None
    try:
        process = subprocess.Popen(
            [program, *args[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
            start_new_session=os.name == "posix",  # a process group, to kill all of it on time-out
        )
    except (OSError, ValueError):
        return None
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        return None
    if process.returncode != 0:
        return None
    return output[:MAX_OUTPUT_BYTES].decode("utf-8", errors="replace")


def _kill(process: subprocess.Popen) -> None:
    """Kill the tool and its children, then reap it so no zombie is left."""
    with contextlib.suppress(OSError):
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        process.communicate(timeout=TOOL_SECONDS)
