"""What the transitioner tells the layers above it, without importing them.

``replicas_timed_out`` is sent inside the transitioner's transaction with ``timed_out`` (a
list of :class:`TimedOut`) and ``now``; the standing app counts each as its host's error.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.dispatch import Signal


@dataclass(frozen=True)
class TimedOut:
    """A replica whose host missed its deadline."""

    host_id: int
    app_id: int
    app_version_id: int | None


replicas_timed_out = Signal()
