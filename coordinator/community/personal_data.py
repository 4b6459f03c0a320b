"""Everything the project holds about a volunteer, as one JSON document they can download.

The account (its secrets left out: the password's and the account token's hashes), its
consent, its choices, its computers, every ledger entry of its credit and every result its
computers returned (outputs aside: they are the science's, not the volunteer's). Written row by
row, so a volunteer with a million results is streamed, not held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model
from django.db.models.fields.files import FieldFile

from coordinator.accounts.models import Host, Volunteer
from coordinator.validation.models import LedgerEntry
from coordinator.work.models import Replica

SECRET_FIELDS = {"password", "token_hash"}
ROWS_PER_FETCH = 2000


def row(instance: Model, *, leave_out: Iterable[str] = ()) -> dict[str, Any]:
    """A row's own columns by name (foreign keys as ids), secrets and bytes left out."""
    skipped = SECRET_FIELDS | set(leave_out)
    values = {}
    for field in instance._meta.concrete_fields:
        if field.name in skipped:
            continue
        value = getattr(instance, field.attname)
        if isinstance(value, FieldFile):
            values[field.attname] = value.name or None  # where a file is stored, not its bytes
        elif not isinstance(value, (bytes, memoryview)):
            values[field.attname] = value
    return values


def _dump(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def _array(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield "["
    for index, values in enumerate(rows):
        yield ("," if index else "") + "\n  " + _dump(values)
    yield "\n]"


def account_of(volunteer: Volunteer) -> dict[str, Any]:
    team = volunteer.team
    return {
        "user": row(volunteer.user, leave_out={"is_superuser", "is_staff"}),
        "volunteer": row(volunteer),
        "team": {"id": team.pk, "name": team.name} if team is not None else None,
    }


def export(volunteer: Volunteer, *, now: datetime) -> Iterator[str]:
    """The document, in pieces: ``{"exported_at", "account", "hosts", "ledger", "results"}``."""
    yield "{" + f'"exported_at": {_dump(now)},\n"account": {_dump(account_of(volunteer))},\n"hosts": '
    yield from _array(row(host) for host in Host.objects.filter(volunteer=volunteer).order_by("pk"))
    yield ',\n"ledger": '
    entries = LedgerEntry.objects.filter(volunteer=volunteer).order_by("seq").iterator(ROWS_PER_FETCH)
    yield from _array(row(entry) for entry in entries)
    yield ',\n"results": '
    results = Replica.objects.filter(host__volunteer=volunteer).order_by("pk").iterator(ROWS_PER_FETCH)
    yield from _array(row(result) for result in results)
    yield "\n}\n"
