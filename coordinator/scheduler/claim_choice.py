"""What one claim has picked so far (``dispatch.claim_work``), within its limits: the tasks
asked for, the seconds asked for, the cores asked for, the daily quotas and the work buffer
(``scheduler.buffer``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from coordinator.accounts.models import Host
from coordinator.scheduler.buffer import buffer_room
from coordinator.scheduler.dispatch_sql import AppFilter, Candidate
from coordinator.scheduler.versions import Chosen


def buffer_seconds(host: Host) -> float:
    """The work buffer (``scheduler.buffer``) for ``host``: none for a stock BOINC client
    (``Host.bearer``), which keeps its own buffer in days and, told no more, backs off its
    work fetch rather than ask again as a core frees, as our client does."""
    return float("inf") if host.bearer else settings.TESSERA["WORK_BUFFER_SECONDS"]


@dataclass
class ClaimChoice:
    """What one claim has picked so far."""

    limit: int
    seconds_wanted: float
    cores: int  # the host's, for the seconds of work a task fills
    versions: dict[int, Chosen]  # app id -> the version this host runs it with
    quota: dict[int, int]  # app version id -> replicas left today
    filters: list[AppFilter]
    chosen: list[Candidate]
    seconds: float = 0.0
    cores_wanted: float = 0.0  # a request for n tasks asks for n cores' worth (an mt task fills several)
    cores_taken: float = 0.0
    unreliable_at: datetime | None = None  # now, for a host that is not reliable (else None)
    held: int = 0  # tasks the host holds already
    buffer_seconds: float = float("inf")  # WORK_BUFFER_SECONDS: work waiting to start, at most
    buffer_set: bool = False

    @property
    def version_of_app(self) -> dict[int, int]:
        return {app_id: chosen.version.pk for app_id, chosen in self.versions.items()}

    @property
    def full(self) -> bool:
        return (
            len(self.chosen) >= self.limit
            or (self.seconds_wanted > 0 and self.seconds >= self.seconds_wanted)
            or (self.cores_wanted > 0 and self.cores_taken >= self.cores_wanted)
        )

    def take(self, candidates: list[Candidate]) -> None:
        units = {c.unit_id for c in self.chosen}
        for candidate in candidates:
            if self.full:
                return
            chosen = self.versions[candidate.app_id]
            version_id = chosen.version.pk
            if candidate.unit_id in units or self.quota[version_id] <= 0:
                continue
            # Seconds of the host's whole computer: a task on c of its n cores fills c/n of it.
            seconds = candidate.fpops / chosen.speed * min(1.0, chosen.usage.cores / self.cores)
            if not self.buffer_set:
                self.limit_to_buffer(chosen.usage.cores, seconds)
                if self.full:
                    return
            units.add(candidate.unit_id)
            self.quota[version_id] -= 1
            self.chosen.append(candidate)
            self.cores_taken += chosen.usage.cores
            self.seconds += seconds

    def limit_to_buffer(self, task_cores: float, task_seconds: float) -> None:
        """The work buffer's limit (``scheduler.buffer``), sized by the first task taken: the
        tasks read in one claim are mostly of one batch, so alike."""
        self.buffer_set = True
        room = buffer_room(
            cores=self.cores,
            held=self.held,
            task_cores=task_cores,
            task_seconds=task_seconds,
            buffer_seconds=self.buffer_seconds,
        )
        self.limit = min(self.limit, len(self.chosen) + room)

    def count_by_version(self) -> dict[int, int]:
        """Replicas chosen per app version, for the daily quotas."""
        used: dict[int, int] = {}
        version_of_app = self.version_of_app
        for candidate in self.chosen:
            version_id = version_of_app[candidate.app_id]
            used[version_id] = used.get(version_id, 0) + 1
        return used
