"""Appending to the credit ledger, sealing its head, and exporting it.

The chain's format is ``tessera_client.ledger``, which volunteers run to verify an export
without the database; this module only writes it. Appending locks the one ``LedgerHead``
row, so grants and reversals from concurrent validators form one chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from nacl.signing import SigningKey
from tessera_client.ledger import BEARER, FORMAT, GENESIS_HASH, entry_hash, reversal_hash, seal_message
from tessera_client.signing import b64encode

from coordinator.accounts.models import Host, Volunteer
from coordinator.core.bulk import for_update, insert_rows
from coordinator.core.prepared import prepared_cursor
from coordinator.standing.services import Grant
from coordinator.validation.models import LedgerEntry, LedgerHead, LedgerSeal


def credit_text(amount: Decimal) -> str:
    return f"{amount:.6f}"


def stamp(moment: datetime) -> str:
    """A time as the chain spells it: ISO 8601 in UTC, so a database round trip keeps it."""
    return moment.astimezone(UTC).isoformat()


def entry_fields(entry: LedgerEntry) -> dict[str, Any]:
    fields = {
        "seq": entry.seq,
        "volunteer": entry.volunteer_id,
        "host": entry.host_id,
        "replica": entry.replica_id,
        "unit": entry.unit_id,
        "credit": credit_text(entry.credit),
        "granted_at": stamp(entry.granted_at),
    }
    if entry.fuel is not None:  # a wasm grant: anyone with the module can check its fuel
        fields["fuel"] = entry.fuel
    if entry.trust is not None:  # a BOINC client's host: trusted less, and the chain says so
        fields["trust"] = entry.trust
    return fields


def chain_hash(entry: LedgerEntry, prev: str) -> str:
    """The entry's hash as the verifier recomputes it: a reversal's covers its kind and the
    seq of its grant, a grant's is the same as before reversals existed."""
    if entry.kind == LedgerEntry.Kind.REVERSAL:
        return reversal_hash({**entry_fields(entry), "reverses": entry.reverses_id}, prev)
    return entry_hash(entry_fields(entry), prev)


# Every validation pass takes the head and moves it: two fixed statements, prepared.
HEAD = LedgerHead._meta.db_table
MOVE_HEAD = f"UPDATE {HEAD} SET seq = %s, hash = %s WHERE id = 1"


def _locked_head() -> LedgerHead:
    """The chain's head, locked until the transaction ends (made by the first append)."""
    with prepared_cursor() as cursor:
        cursor.execute(f"SELECT seq, hash FROM {HEAD} WHERE id = 1{for_update()}")
        row = cursor.fetchone()
    if row is not None:
        return LedgerHead(id=1, seq=row[0], hash=row[1])
    LedgerHead.objects.get_or_create(id=1, defaults={"seq": 0, "hash": GENESIS_HASH})
    return LedgerHead.objects.select_for_update().get(id=1)


def _chain(head: LedgerHead, entries: list[LedgerEntry]) -> None:
    """Number and hash the entries after the locked head, write them, and move the head."""
    seq, prev = head.seq, head.hash
    for entry in entries:
        seq += 1
        entry.seq, entry.prev_hash = seq, prev
        entry.hash = prev = chain_hash(entry, prev)
    insert_rows(LedgerEntry, entries)
    with prepared_cursor() as cursor:
        cursor.execute(MOVE_HEAD, [seq, prev])


def append(grants: list[Grant], *, now: datetime, bearer_hosts: set[int] | None = None) -> None:
    """Chain one entry per grant after the current head; the caller's transaction holds it.
    ``bearer_hosts``: which of the grants' hosts are stock BOINC clients', when the caller
    has read them already (a host is one from when it is made); else they are read here."""
    if not grants:
        return
    head = _locked_head()
    bearer = bearer_hosts
    if bearer is None:
        bearer = set(
            Host.objects.filter(pk__in={g.host_id for g in grants}, bearer=True).values_list("pk", flat=True)
        )
    _chain(
        head,
        [
            LedgerEntry(
                kind=LedgerEntry.Kind.GRANT,
                volunteer_id=grant.volunteer_id,
                host_id=grant.host_id,
                replica_id=grant.replica_id,
                unit_id=grant.unit_id,
                credit=grant.credit,
                granted_at=now,
                fuel=grant.fuel,
                trust=BEARER if grant.host_id in bearer else None,
            )
            for grant in grants
        ],
    )


def append_reversals(*, replica_ids: Iterable[int], now: datetime) -> list[tuple[LedgerEntry, LedgerEntry]]:
    """Chain one reversal after the current head for each of these replicas' grants that
    has none yet; returns (grant, reversal) pairs in chain order. The caller's transaction
    holds the head, so the grants found unreversed here stay so until it ends."""
    replica_ids = list(replica_ids)
    if not replica_ids:
        return []
    head = _locked_head()
    grants = list(
        LedgerEntry.objects.filter(
            replica_id__in=replica_ids, kind=LedgerEntry.Kind.GRANT, reversal__isnull=True
        ).order_by("seq")
    )
    if not grants:
        return []
    reversals = [
        LedgerEntry(
            kind=LedgerEntry.Kind.REVERSAL,
            volunteer_id=grant.volunteer_id,
            host_id=grant.host_id,
            replica_id=grant.replica_id,
            unit_id=grant.unit_id,
            credit=grant.credit,
            granted_at=now,
            reverses_id=grant.seq,
        )
        for grant in grants
    ]
    _chain(head, reversals)
    return list(zip(grants, reversals, strict=True))


@transaction.atomic
def seal(*, key: SigningKey, now: datetime, min_interval: timedelta = timedelta(0)) -> LedgerSeal | None:
    """Sign the current head, unless it is already sealed, the chain is empty, or the last
    seal is younger than ``min_interval`` (the periodic sweep seals at intervals)."""
    head = _locked_head()
    if head.seq == 0 or LedgerSeal.objects.filter(seq=head.seq).exists():
        return None
    if min_interval and LedgerSeal.objects.filter(sealed_at__gt=now - min_interval).exists():
        return None
    sealed_at = stamp(now)
    signature = key.sign(seal_message(head.seq, head.hash, sealed_at)).signature
    return LedgerSeal.objects.create(
        seq=head.seq, head_hash=head.hash, sealed_at=now, signature=b64encode(signature)
    )


def export_records(*, public_key: str, now: datetime) -> Iterator[dict[str, Any]]:
    """The export, record by record; read it inside one snapshot (see ``export_snapshot``)."""
    yield {"kind": "header", "format": FORMAT, "public_key": public_key, "exported_at": stamp(now)}
    last_seq = 0
    for entry in LedgerEntry.objects.order_by("seq").iterator(chunk_size=5000):
        if entry.kind == LedgerEntry.Kind.REVERSAL:
            yield {
                "kind": "reversal",
                **entry_fields(entry),
                "reverses": entry.reverses_id,
                "prev": entry.prev_hash,
                "hash": entry.hash,
            }
        else:
            yield {"kind": "entry", **entry_fields(entry), "prev": entry.prev_hash, "hash": entry.hash}
        last_seq = entry.seq
    for seal_row in LedgerSeal.objects.filter(seq__lte=last_seq).order_by("seq"):
        yield {
            "kind": "seal",
            "seq": seal_row.seq,
            "head": seal_row.head_hash,
            "sealed_at": stamp(seal_row.sealed_at),
            "signature": seal_row.signature,
        }
    totals = Volunteer.objects.filter(total_credit__gt=0).values_list("pk", "total_credit")
    yield {"kind": "totals", "volunteers": {str(pk): credit_text(total) for pk, total in totals}}
