"""The claim's row locks and writes, in plain SQL: each runs on every scheduler RPC that asks
for work, and the ORM spent more CPU building these one-table statements than the database
spent running them (docs/benchmarks.md). They run on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection

from coordinator.accounts.models import Host, Volunteer
from coordinator.core.bulk import any_of, for_no_key_update
from coordinator.core.prepared import prepared_cursor
from coordinator.standing.models import HostAppVersion
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica

HOSTS = Host._meta.db_table
VOLUNTEERS = Volunteer._meta.db_table
QUOTAS = HostAppVersion._meta.db_table
REPLICAS = Replica._meta.db_table


def _db_time(moment: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(moment)


def lock_volunteer(volunteer_id: int) -> None:
    """Hold the volunteer's row until the transaction ends: two hosts of one volunteer claim
    one after the other, so they never both take a replica of one unit. Without the key lock:
    a validator's ledger entries and credit days that refer to the volunteer go on meanwhile."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT user_id FROM {VOLUNTEERS} WHERE user_id = %s{for_no_key_update()}", [volunteer_id]
        )


# A host's last contact is kept to this: what reads it counts hosts active over hours or a
# day, and a host that asks every few seconds would otherwise write its row each time, waiting
# behind any validation pass that holds the row for its figures.
CONTACT_RESOLUTION = timedelta(seconds=60)


def touch_host(host: Host, now: datetime) -> None:
    """The host was heard from now (BOINC's rpc_time), to ``CONTACT_RESOLUTION``."""
    last = host.last_contact
    if last is not None and timedelta(0) <= now - last < CONTACT_RESOLUTION:
        return
    with prepared_cursor() as cursor:
        cursor.execute(f"UPDATE {HOSTS} SET last_contact = %s WHERE id = %s", [_db_time(now), host.pk])
    host.last_contact = now


def set_quota_used(host_id: int, version_id: int, day: date, used: int) -> None:
    """Today's dispatches of one app version to one host (the row exists)."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"UPDATE {QUOTAS} SET quota_day = %s, quota_used = %s WHERE host_id = %s AND app_version_id = %s",
            [connection.ops.adapt_datefield_value(day), used, host_id, version_id],
        )


# A host's first dispatch of a version makes its quota row; one that another request made
# meanwhile is counted over, as an existing row's count is.
START_QUOTA = (
    f"INSERT INTO {QUOTAS} (host_id, app_version_id, daily_quota, quota_day, quota_used)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (host_id, app_version_id)"
    " DO UPDATE SET quota_day = excluded.quota_day, quota_used = excluded.quota_used"
)


def start_quota_use(host_id: int, version_id: int, daily_quota: int, day: date, used: int) -> None:
    """Today's dispatches of one app version to one host whose row may not exist yet."""
    with prepared_cursor() as cursor:
        cursor.execute(
            START_QUOTA, [host_id, version_id, daily_quota, connection.ops.adapt_datefield_value(day), used]
        )


@dataclass(frozen=True)
class SentAs:
    """What a group of claimed replicas is written with."""

    host_id: int
    volunteer_id: int
    version_id: int
    now: datetime
    deadline: datetime
    overdue_at: datetime | None
    single: bool  # sent as its unit's only replica (adaptive replication)


def mark_sent(replica_ids: Sequence[int], sent: SentAs) -> int:
    """Write these replicas as sent, those still unsent only; returns how many were."""
    among, params = any_of("id", replica_ids)
    with prepared_cursor() as cursor:
        cursor.execute(
            f"UPDATE {REPLICAS} SET state = %s, host_id = %s, volunteer_id = %s, app_version_id = %s,"
            f" sent_at = %s, deadline = %s, overdue_at = %s, trusted_single = %s"
            f" WHERE {among} AND state = %s",
            [
                ReplicaState.IN_PROGRESS.value,
                sent.host_id,
                sent.volunteer_id,
                sent.version_id,
                _db_time(sent.now),
                _db_time(sent.deadline),
                _db_time(sent.overdue_at),
                sent.single,
                *params,
                ReplicaState.UNSENT.value,
            ],
        )
        return cursor.rowcount
