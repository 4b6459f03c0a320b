"""Reads for the public pages: project status, and leaderboard rows ready to show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import TruncHour

from coordinator.accounts.models import Host
from coordinator.standing.credit import rac_now
from coordinator.standing.models import CreditDay
from coordinator.validation.models import LedgerEntry
from coordinator.validation.selectors import UNLISTED_HOST
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica
from coordinator.work.selectors import live_versions, unit_counts

ACTIVE_WINDOW = timedelta(days=1)


PLATFORM_NAMES = {
    "any": "any computer",
    "x86_64-pc-linux-gnu": "Linux on x86-64",
    "i686-pc-linux-gnu": "Linux on x86",
    "aarch64-unknown-linux-gnu": "Linux on 64-bit ARM",
    "x86_64-apple-darwin": "macOS on Intel",
    "arm64-apple-darwin": "macOS on Apple silicon",
    "windows_x86_64": "Windows on x86-64",
    "windows_arm64": "Windows on ARM",
}
RUNTIME_NAMES = {"python": "Python", "wasm": "WebAssembly", "native": "native"}


@dataclass(frozen=True)
class VersionRow:
    """One line of an app's versions, as BOINC's apps page lists them."""

    platform: str
    platform_name: str
    version: int
    kind: str  # runtime and plan class in words
    beta: bool
    published: datetime


@dataclass(frozen=True)
class AppRow:
    name: str
    title: str
    versions: list[VersionRow]


@dataclass(frozen=True)
class Status:
    units: dict[str, int]
    replicas_waiting: int
    replicas_in_progress: int
    validated_today: int
    hosts_active: int
    apps: list[AppRow]


def app_rows() -> list[AppRow]:
    """Each app's current versions (the newest per platform, plan class and runtime), by
    platform, so a volunteer sees whether their computer can help."""
    apps: dict[int, AppRow] = {}
    for version in sorted(
        live_versions(),
        key=lambda v: (v.app.name, v.platform != "any", v.platform, v.runtime, v.plan_class),
    ):
        row = apps.setdefault(version.app_id, AppRow(version.app.name, version.app.title, []))
        kind = RUNTIME_NAMES.get(version.runtime, version.runtime)
        if version.plan_class != "cpu":
            kind = f"{kind}, {version.plan_class}"
        row.versions.append(
            VersionRow(
                version.platform,
                PLATFORM_NAMES.get(version.platform, version.platform),
                version.version,
                kind,
                version.beta,
                version.created,
            )
        )
    return sorted(apps.values(), key=lambda app: app.name)


def project_status(*, now: datetime) -> Status:
    """What a volunteer or an admin wants to know at a glance; a handful of counting queries."""
    replicas = dict(Replica.objects.values_list("state").annotate(n=Count("id")).order_by())
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return Status(
        units=unit_counts(),
        replicas_waiting=replicas.get(ReplicaState.UNSENT, 0),
        replicas_in_progress=replicas.get(ReplicaState.IN_PROGRESS, 0),
        validated_today=LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.GRANT, granted_at__gte=midnight
        ).count(),
        hosts_active=Host.objects.filter(last_contact__gte=now - ACTIVE_WINDOW).count(),
        apps=app_rows(),
    )


@dataclass(frozen=True)
class BoardRow:
    rank: int | None
    name: str
    total: Decimal
    recent: float
    mine: bool
    detail: str = ""  # a host's platform and owner


def board_rows(
    board: str, rows: list[Any], ranks: list[int | None], *, viewer: Any, now: datetime
) -> list[BoardRow]:
    """A page of a leaderboard as the page shows it, the viewer's own row marked."""
    volunteer_id = viewer.pk if viewer is not None and viewer.is_authenticated else None
    team_id = getattr(getattr(viewer, "volunteer", None), "team_id", None) if volunteer_id else None
    shown = []
    for row, rank in zip(rows, ranks, strict=True):
        if board == "volunteers":
            name, mine, detail = row.name, row.pk == volunteer_id, ""
        elif board == "teams":
            name, mine, detail = row.name, team_id is not None and row.pk == team_id, ""
        else:
            mine = volunteer_id is not None and row.volunteer_id == volunteer_id
            listed = row.volunteer_name is not None
            name = row.name if listed or mine else UNLISTED_HOST
            detail = f"{row.platform}, {row.volunteer_name}" if listed else row.platform
        shown.append(
            BoardRow(rank, name, row.total_credit, rac_now(row.rac, row.rac_time, now), mine, detail)
        )
    return shown


def validated_per_hour(*, now: datetime, hours: int = 24) -> list[tuple[datetime, int]]:
    """Results validated and credited in each of the last ``hours`` hours, oldest first."""
    top = now.replace(minute=0, second=0, microsecond=0)
    first = top - timedelta(hours=hours - 1)
    counted = dict(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GRANT, granted_at__gte=first)
        .annotate(hour=TruncHour("granted_at"))
        .values_list("hour")
        .annotate(n=Count("seq"))
        .order_by()
    )
    return [(first + timedelta(hours=n), counted.get(first + timedelta(hours=n), 0)) for n in range(hours)]


def team_credit_per_day(*, team_id: int, days: int, now: datetime) -> list[tuple[Any, Decimal]]:
    """Credit its current members were granted on each of the last ``days`` UTC days."""
    today = now.date()
    first = today - timedelta(days=days - 1)
    granted = dict(
        CreditDay.objects.filter(volunteer__team_id=team_id, day__gte=first)
        .values_list("day")
        .annotate(total=Sum("credit"))
        .order_by()
    )
    return [
        (first + timedelta(days=n), granted.get(first + timedelta(days=n), Decimal(0))) for n in range(days)
    ]
