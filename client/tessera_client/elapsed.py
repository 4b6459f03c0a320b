"""How long each task's app has run, time suspended left out: the project learns from it how
fast this host runs each app version.

The daemon's loop calls :meth:`ElapsedTime.count` before it changes which apps are suspended,
so the time since the last count is added to each app that ran through all of it. The monotonic
clock is used: a wall clock set back or forward, or a laptop asleep, adds nothing. The seconds
go to the journal (:meth:`~tessera_client.journal.Journal.add_elapsed`) when the task ends and
every :data:`SAVE_SECONDS` while it runs, as its CPU time does, so a crash loses at most that.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Callable, Protocol

from tessera_client.journal import Journal

SAVE_SECONDS = 60.0
Key = tuple[str, int]  # (project, replica)


class Suspendable(Protocol):
    @property
    def suspended(self) -> bool: ...


class HasProcess(Protocol):
    @property
    def process(self) -> Suspendable: ...


class ElapsedTime:
    """Seconds of running counted per task and not yet written to the journal."""

    def __init__(self, journal: Journal, clock: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.clock = clock
        self.counted_at: dict[Key, float] = {}  # when each running app was last counted
        self.saved_at: dict[Key, float] = {}
        self.unsaved: dict[Key, float] = {}

    def started(self, key: Key) -> None:
        """The task's app starts now (again, after a restart: earlier runs are in the journal)."""
        now = self.clock()
        self.counted_at[key] = self.saved_at[key] = now
        self.unsaved.setdefault(key, 0.0)

    def count(self, running: Mapping[Key, HasProcess]) -> None:
        """Add the time since the last count to each app that was not suspended meanwhile."""
        now = self.clock()
        for key, app in running.items():
            since = self.counted_at.get(key, now)
            if not app.process.suspended:
                self.unsaved[key] = self.unsaved.get(key, 0.0) + max(0.0, now - since)
            self.counted_at[key] = now
            self.saved_at.setdefault(key, now)

    def save(self, running: Mapping[Key, object], *, everything: bool = False) -> None:
        """Write what was counted to the journal: for every task whose app ended, and for the
        running ones each :data:`SAVE_SECONDS` (or now, with ``everything``)."""
        now = self.clock()
        for key, seconds in list(self.unsaved.items()):
            ended = key not in running
            if not (ended or everything or now - self.saved_at.get(key, now) >= SAVE_SECONDS):
                continue
            record = self.journal.get(*key)
            if record is not None and seconds > 0:
                self.journal.add_elapsed(record, seconds)
            self.unsaved[key], self.saved_at[key] = 0.0, now
            if ended:
                for table in (self.unsaved, self.saved_at, self.counted_at):
                    table.pop(key, None)
