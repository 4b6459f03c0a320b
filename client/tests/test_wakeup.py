"""The daemon's sleep ends when one of its apps ends (tessera_client.wakeup)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from tessera_client.wakeup import Wakeup

POSIX = hasattr(signal, "SIGCHLD")


@pytest.mark.skipif(not POSIX, reason="no SIGCHLD on this platform: the sleep is a plain one")
def test_a_child_that_ends_cuts_the_sleep_short_and_everything_is_put_back():
    handler_before = signal.getsignal(signal.SIGCHLD)
    with Wakeup() as wakeup:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
        began = time.monotonic()
        wakeup.sleep(30.0)
        slept = time.monotonic() - began
        child.wait()
    assert slept < 15.0, f"the sleep ran {slept:.1f} s of 30 though the child ended after 0.2 s"
    assert signal.getsignal(signal.SIGCHLD) == handler_before
    assert signal.set_wakeup_fd(-1) == -1, "the wakeup fd is given back"


def test_without_a_child_ending_it_sleeps_its_time():
    with Wakeup() as wakeup:
        began = time.monotonic()
        wakeup.sleep(0.3)
        assert time.monotonic() - began >= 0.29
        wakeup.sleep(-1.0)  # a look already overdue: no sleep at all


@pytest.mark.skipif(not POSIX, reason="no SIGCHLD on this platform: the sleep is a plain one")
def test_a_poke_from_another_thread_cuts_the_sleep_short_and_is_harmless_after_exit():
    with Wakeup() as wakeup:
        poker = threading.Timer(0.2, wakeup.poke)
        poker.start()
        began = time.monotonic()
        wakeup.sleep(30.0)
        slept = time.monotonic() - began
        poker.join()
    wakeup.poke()  # the pipe is closed: nothing is written anywhere
    assert slept < 15.0
