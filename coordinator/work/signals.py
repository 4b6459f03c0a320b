"""What the work app tells the layers above it, without importing them.

``replicas_timed_out`` is sent inside the transitioner's transaction with ``timed_out`` (a
list of :class:`TimedOut`) and ``now``; the standing app counts each as its host's error.

``app_published`` is sent by ``publishing.publish_app`` once an app's versions are registered,
with ``app``, ``version`` (the number) and ``signing_key``; a receiver returns the further
versions it made (the boinc app: the BOINC versions of the native ones), which the publish
reports with the others.

``batches_finished`` is sent once the last active unit of running batches settled, with
``batch_ids``; the science app assimilates them now rather than at its next sweep.
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
app_published = Signal()
batches_finished = Signal()
