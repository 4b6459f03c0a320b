"""The credit a project reported over time, for the dashboard's chart.

Each change of credit is kept as ``[time, host credit, your credit]``. When there are more than
:data:`KEPT` points the older half is thinned to every other point, so the runtime file stays a
few kilobytes while the recent past keeps its detail and the distant past its shape.
"""

from __future__ import annotations

import math
from typing import Any

from tessera_client.state import Runtime

KEPT = 200


def figure(credit: Any, key: str) -> float:
    """One credit figure the project reported, or 0.0 when it sent something else."""
    value = credit.get(key, 0) if isinstance(credit, dict) else 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def note(runtime: Runtime, now: float) -> None:
    """Add the runtime's current credit to its history, if it changed."""
    point = [now, figure(runtime.credit, "host_total"), figure(runtime.credit, "volunteer_total")]
    history = runtime.credit_history
    if not all(isinstance(kept, list) and len(kept) == 3 for kept in history):
        history.clear()  # a runtime file edited by hand, say: it is only a cache
    if history and history[-1][1:] == point[1:]:
        return
    history.append(point)
    if len(history) > KEPT:
        half = KEPT // 2
        history[:] = history[:-half][::2] + history[-half:]
