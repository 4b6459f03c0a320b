"""Fair share in dispatch, in plain SQL on the claim's hot path (``shares.policy`` decides).

``standings`` reads, once per claim, which shares have unsent work and what each used in the
window; ``charge`` adds what a claim sent to its share's row of the minute, in one statement.
Both run on PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from coordinator.core.prepared import literal, prepared_cursor
from coordinator.shares.models import Share, Use
from coordinator.shares.policy import Standing
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica

SHARES = Share._meta.db_table
USE = Use._meta.db_table
REPLICAS = Replica._meta.db_table

UNSENT = literal(ReplicaState.UNSENT)  # spelled in the SQL: the dispatch index is partial
# Every share with unsent work (one probe of the dispatch index each), with its use in the
# window (one range of its use rows); then the project's own work, when it has some.
STANDINGS = f"""
SELECT s.id, s.weight,
       COALESCE((SELECT SUM(u.fpops) FROM {USE} u WHERE u.share_id = s.id AND u.minute >= %s), 0)
FROM {SHARES} s
WHERE EXISTS (SELECT 1 FROM {REPLICAS} r WHERE r.share_id = s.id AND r.state = {UNSENT} AND NOT r.reserved)
UNION ALL
SELECT NULL, 1, 0
WHERE EXISTS (SELECT 1 FROM {REPLICAS} r WHERE r.share_id IS NULL AND r.state = {UNSENT} AND NOT r.reserved)
"""

CHARGE = f"""
INSERT INTO {USE} (share_id, minute, slot, replicas, fpops) VALUES {{rows}}
ON CONFLICT (share_id, minute, slot)
DO UPDATE SET replicas = {USE}.replicas + excluded.replicas, fpops = {USE}.fpops + excluded.fpops
"""


def minute_of(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def standings(now: datetime) -> list[Standing]:
    """The shares with unsent work that is not reserved, and their use in the window."""
    since = minute_of(now - timedelta(seconds=settings.TESSERA["FAIR_SHARE_WINDOW_SECONDS"]))
    with prepared_cursor() as cursor:
        cursor.execute(STANDINGS, [connection.ops.adapt_datetimefield_value(since)])
        return [
            Standing(share_id, float(weight), float(used)) for share_id, weight, used in cursor.fetchall()
        ]


def charge(*, host_id: int, sent: dict[int, tuple[int, float]], now: datetime) -> None:
    """Add what one claim sent (share id -> replicas, operations) to the shares' use. Rows are
    written in share order, so two claims never wait on each other's rows in a cycle."""
    if not sent:
        return
    slot = host_id % settings.TESSERA["FAIR_SHARE_SLOTS"]
    minute = connection.ops.adapt_datetimefield_value(minute_of(now))
    params: list[Any] = []
    for share_id in sorted(sent):
        replicas, fpops = sent[share_id]
        params += [share_id, minute, slot, replicas, fpops]
    rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(sent))
    with prepared_cursor() as cursor:
        cursor.execute(CHARGE.format(rows=rows), params)
