"""What the daemon tells each project about this computer in the scheduler RPC's ``host_info``,
and when: the host description (:func:`tessera_client.hardware.describe`) with the last
benchmark's speed and the share of time it crunches (:mod:`tessera_client.time_stats`), once
per client start and again whenever it changes.

The description is made once and kept: again only when a preference it reflects changes
(``use_gpus``, ``native_apps``, ``disk_max_gb``), when ``tessera benchmark`` ran (the hardware is read again
then), or after :data:`DESCRIBE_SECONDS`, as the free disk moves. An unchanged description is
not sent twice to a project in one run of the client.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from tessera_client import hardware
from tessera_client.prefs import Preferences
from tessera_client.time_stats import TimeStats

DESCRIBE_SECONDS = 3600.0


class HostDescription:
    """This computer's description, with the benchmark's speed, made again only when due."""

    def __init__(self, folder: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.clock = clock
        self._info: dict[str, Any] | None = None
        self._made_for: tuple[Any, ...] = ()
        self._made_at = 0.0
        self.time = TimeStats(self.folder / "time_stats.json")  # how much of the time it crunches

    def forget(self) -> None:
        """A benchmark ran: read the hardware again at the next look."""
        hardware.refresh()
        self._info = None

    def current(self, prefs: Preferences, benchmark: dict[str, Any], used_bytes: Callable[[], int]) -> dict:
        """The ``host_info`` to send now. ``benchmark``: the last benchmark's figures (none
        yet: no ``flops``, so the project keeps its estimate); ``used_bytes``: what the client
        keeps on disk (asked only when the description is made, as it walks the folders)."""
        made_for = (prefs.use_gpus, prefs.native_apps, prefs.disk_max_gb)
        stale = self.clock() - self._made_at >= DESCRIBE_SECONDS
        if self._info is None or made_for != self._made_for or stale:
            info = hardware.describe(
                self.folder,
                limit_bytes=prefs.disk_max_gb * 1e9,
                used_bytes=used_bytes(),
                use_gpus=prefs.use_gpus,
                native_apps=prefs.native_apps,
            )
            if benchmark.get("flops"):
                info["flops"] = float(benchmark["flops"])
            self._info, self._made_for, self._made_at = info, made_for, self.clock()
        return {**self._info, **self.time.to_json()}


def due(info: dict[str, Any], *, described: dict[str, Any], measured_at: float, sent_at: float) -> dict:
    """``info`` when the project has not taken it in this run of the client (``described``) or a
    benchmark newer than the one it heard of (``sent_at``) ran; else nothing to send."""
    if info == described and measured_at <= sent_at:
        return {}
    return info
