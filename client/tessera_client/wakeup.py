"""The daemon's sleep between looks, cut short when one of its apps ends.

The loop looks about once a second. A task that ends just after a look would otherwise wait
up to a second before it is noticed: its elapsed time, which tells the project how fast this
computer runs the app's version, would be rounded up to the loop's tick, and the next task
would start that much later. On POSIX, ``SIGCHLD`` (an app process ending) writes to a pipe
through :func:`signal.set_wakeup_fd`, and the sleep waits on that pipe, so the loop looks again
within milliseconds. Elsewhere, or off the main thread, it is a plain sleep.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from types import FrameType
from typing import Any


def _noted(signum: int, frame: FrameType | None) -> None:
    """A Python handler must be set for the wakeup fd to be written; the pipe is the news."""


class Wakeup:
    """``with Wakeup() as wakeup: wakeup.sleep(seconds)``; restores what it changed on exit."""

    def __init__(self) -> None:
        self._pipe: tuple[int, int] | None = None
        self._previous_fd = -1
        self._previous_handler: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Wakeup:
        usable = hasattr(signal, "SIGCHLD") and threading.current_thread() is threading.main_thread()
        if usable:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._previous_handler = signal.signal(signal.SIGCHLD, _noted)
            self._previous_fd = signal.set_wakeup_fd(write)
            self._pipe = (read, write)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        signal.signal(signal.SIGCHLD, self._previous_handler)
        with self._lock:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None

    def poke(self) -> None:
        """Wake the sleep now, from any thread (the dashboard has a request); a plain sleep
        (no pipe) looks again within its second anyway."""
        with self._lock:  # never a write to a descriptor closed (and reused) meanwhile
            if self._pipe is not None:
                with contextlib.suppress(OSError):  # a full pipe: the loop wakes anyway
                    os.write(self._pipe[1], b"!")

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a child process ended meanwhile (or had, unnoticed)."""
        if self._pipe is None:
            time.sleep(seconds)
            return
        read = self._pipe[0]
        ready, _, _ = select.select([read], [], [], max(0.0, seconds))
        if ready:
            try:
                while os.read(read, 512):
                    pass
            except BlockingIOError:
                pass
