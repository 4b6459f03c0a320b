"""Statistics export in BOINC's format, so that BOINC stats sites can list Tessera's volunteers.

BOINC projects publish ``user.gz``, ``team.gz`` and ``host.gz`` (gzipped XML) and a plain
``tables.xml`` with the counts, written daily by BOINC's ``db_dump`` (``sched/db_dump.cpp``;
the wiki's DbDump and XmlStats pages). This writes the same files, with the elements that
db_dump's ``write_user``, ``write_team``, ``write_host`` and ``tables_file`` write, from the stored
credit totals (the ledger keeps them; ``expavg_credit`` is RAC as of ``expavg_time``, which
stats sites decay themselves).

Left out, as db_dump leaves out deleted accounts and hosts: volunteers who are not ``listed``
or whose account is inactive, and their hosts; and, as db_dump does, every user, team and
host without credit. A team is listed with its stored totals and founder only when the founder
is listed; ``nusers`` counts its listed, active members.

The CPID is BOINC's: ``md5(cross_project_id + email)`` for a user, and for a host made by a
stock BOINC client ``md5(host_cpid + email)`` as BOINC's scheduler stores it (Tessera keeps the
client's own ``host_cpid``); Tessera's own hosts have none. The email is lowercased, as BOINC
stores it. A volunteer without a cross-project id takes the one their BOINC client brings
from its other projects (``scheduler._adopt_cross_project_id``), so stats sites match the CPIDs
across projects; one who has none gets a random one here, kept, so the CPID is the same in
every export.

Tessera adds ``user_deleted.gz``: the accounts deleted on their owners' request (after the
rows of BOINC's ``user_deleted`` table: the user id, its CPID, when), so that stats sites can
remove what they copied.

Rows are read with ``.iterator()`` in one snapshot and written record by record into gzip
files under temporary names, renamed into place only once all five are complete.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import secrets
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Protocol

from django.db.models import Case, Count, Q, QuerySet, Sum, Value, When

from coordinator.accounts.models import Host, Team, Volunteer
from coordinator.boinc.xml import add
from coordinator.community.models import DeletedAccount
from coordinator.validation.management.commands.ledger import export_snapshot
from coordinator.work.models import App

FILES = {"users": "user.gz", "teams": "team.gz", "hosts": "host.gz", "users_deleted": "user_deleted.gz"}
TABLES = "tables.xml"
TEAM_TYPE_NONE = 1  # BOINC's team type "None" (html/inc/team_types.inc)
CHUNK = 2000  # rows read at a time
FILL_CHUNK = 500  # cross-project ids written by one UPDATE
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
# What XML 1.0 allows in text: anything else (a NUL a client sent in its CPU model) would make
# the whole file unreadable, so it is dropped.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def user_cpid(cross_project_id: str, email: str) -> str:
    """The ``<cpid>`` of a user: md5 of the cross-project id followed by the email address."""
    return _md5(cross_project_id + _email(email))


def host_cpid(client_host_cpid: str, email: str) -> str:
    """The ``<host_cpid>`` of a BOINC host: md5 of the client's host CPID and the owner's email."""
    return _md5(client_host_cpid + _email(email))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _email(email: str) -> str:
    return email.strip().lower()


def clean(text: str) -> str:
    """Text as XML can hold it: ElementTree escapes ``<`` and ``&``, this drops characters
    XML 1.0 has no place for."""
    return NOT_XML.sub("", text)


def unix(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


def _credit(total: Decimal, rac: float, rac_time: datetime | None) -> dict[str, str]:
    return {
        "total_credit": f"{total:.6f}",
        "expavg_credit": f"{rac:.6f}",
        "expavg_time": f"{rac_time.timestamp() if rac_time is not None else 0.0:.6f}",
    }


def exported_volunteers(*, with_cpid: bool = True) -> QuerySet[Volunteer]:
    """The volunteers user.gz lists: listed, active, with credit, and with a cross-project id
    (one who got credit after ``ensure_cross_project_ids`` ran waits for the next export; an
    empty id would make the CPID a plain hash of the email)."""
    rows = Volunteer.objects.filter(listed=True, user__is_active=True, total_credit__gt=0)
    return rows.exclude(cross_project_id="") if with_cpid else rows


def ensure_cross_project_ids() -> int:
    """Give each volunteer the export lists a random cross-project id if they have none yet;
    returns how many. An id another export wrote meanwhile is kept (only empty ones are
    filled), so a CPID once published stays."""
    filled = 0
    pks = list(
        exported_volunteers(with_cpid=False)
        .filter(cross_project_id="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(pks), FILL_CHUNK):
        chunk = pks[start : start + FILL_CHUNK]
        ids = Case(*(When(pk=pk, then=Value(secrets.token_hex(16))) for pk in chunk))
        filled += Volunteer.objects.filter(pk__in=chunk, cross_project_id="").update(cross_project_id=ids)
    return filled


def user_records() -> Iterator[ET.Element]:
    """One ``<user>`` per listed, active volunteer with credit, by id."""
    rows = (
        exported_volunteers()
        .order_by("pk")
        .values_list(
            "pk",
            "user__username",
            "user__email",
            "created",
            "total_credit",
            "rac",
            "rac_time",
            "cross_project_id",
            "team_id",
        )
    )
    for pk, name, email, created, total, rac, rac_time, cross_project_id, team_id in rows.iterator(CHUNK):
        yield _element(
            "user",
            id=pk,
            name=clean(name),
            create_time=unix(created),
            **_credit(total, rac, rac_time),
            cpid=user_cpid(cross_project_id, email),
            teamid=team_id,
        )


def team_records() -> Iterator[ET.Element]:
    """One ``<team>`` per team with credit, by id, with its listed, active members counted.
    The founder is named only when listed and active; else ``<userid>`` is 0, as for a team
    whose founder is gone."""
    members = Q(members__listed=True, members__user__is_active=True)
    rows = (
        Team.objects.filter(total_credit__gt=0)
        .annotate(nusers=Count("members", filter=members))
        .order_by("pk")
        .values_list(
            "pk",
            "name",
            "founder_id",
            "founder__username",
            "founder__is_active",
            "founder__volunteer__listed",
            "created",
            "total_credit",
            "rac",
            "rac_time",
            "nusers",
        )
    )
    for row in rows.iterator(CHUNK):
        pk, name, founder_id, founder_name, founder_active, founder_listed = row[:6]
        created, total, rac, rac_time, nusers = row[6:]
        founder_shown = founder_id is not None and founder_active and founder_listed
        yield _element(
            "team",
            id=pk,
            type=TEAM_TYPE_NONE,
            name=clean(name),
            userid=founder_id if founder_shown else 0,
            **_credit(total, rac, rac_time),
            founder_name=clean(founder_name) if founder_shown else None,
            create_time=unix(created),
            nusers=nusers,
            country="",
        )


def host_records() -> Iterator[ET.Element]:
    """One ``<host>`` per host with credit whose volunteer is listed and active, by id."""
    rows = (
        Host.objects.filter(total_credit__gt=0, volunteer__listed=True, volunteer__user__is_active=True)
        .order_by("pk")
        .values_list(
            "pk",
            "volunteer_id",
            "total_credit",
            "rac",
            "rac_time",
            "cpu_vendor",
            "cpu_model",
            "os_name",
            "os_version",
            "created",
            "last_contact",
            "n_cpus",
            "flops",
            "memory_bytes",
            "boinc__host_cpid",
            "boinc__client_version",
            "volunteer__user__email",
        )
    )
    for row in rows.iterator(CHUNK):
        (pk, volunteer_id, total, rac, rac_time, vendor, model, os_name, os_version) = row[:9]
        created, last_contact, n_cpus, flops, memory, client_cpid, client_version, email = row[9:]
        yield _element(
            "host",
            id=pk,
            userid=volunteer_id,
            **_credit(total, rac, rac_time),
            p_vendor=clean(vendor),
            p_model=clean(model),
            os_name=clean(os_name),
            os_version=clean(os_version),
            boinc_version=clean(client_version) if client_version else None,
            create_time=unix(created),
            rpc_time=unix(last_contact),
            ncpus=n_cpus,
            p_fpops=float(flops),
            m_nbytes=float(memory),
            host_cpid=host_cpid(client_cpid, email) if client_cpid else None,
        )


def deleted_records() -> Iterator[ET.Element]:
    """One ``<user_deleted>`` per deleted account, oldest first (BOINC's user_deleted table):
    the project's user id and the CPID sites knew it by, for them to forget."""
    rows = DeletedAccount.objects.order_by("deleted_at", "pk").values_list(
        "volunteer_id", "cpid", "deleted_at"
    )
    for volunteer_id, cpid, deleted_at in rows.iterator(CHUNK):
        yield _element("user_deleted", id=volunteer_id, cpid=cpid, delete_time=unix(deleted_at))


def tables(counts: dict[str, int], *, total_credit: Decimal, now: datetime) -> ET.Element:
    """``tables.xml``: when, how many of each, all users' credit, and the applications."""
    root = _element(
        "tables",
        update_time=unix(now),
        nusers_total=counts["users"],
        nteams_total=counts["teams"],
        nhosts_total=counts["hosts"],
        total_credit=f"{total_credit:.6f}",
    )
    applications = ET.SubElement(root, "applications")
    for name, title in App.objects.order_by("pk").values_list("name", "title"):
        add(ET.SubElement(applications, "application"), name=clean(title or name))
    return root


def _element(tag: str, **values: object) -> ET.Element:
    return add(ET.Element(tag), **values)


def _text(element: ET.Element) -> bytes:
    """One record laid out as db_dump lays it out, one element a line (some stats sites read
    the files line by line), empty elements as ``<country></country>``."""
    ET.indent(element, space=" ")
    return ET.tostring(element, encoding="unicode", short_empty_elements=False).encode() + b"\n"


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write_records(out: Writable, tag: str, records: Iterable[ET.Element]) -> int:
    """Write ``<tag>`` holding ``records``, one a line, as they come; returns how many."""
    out.write(DECLARATION + f"<{tag}>\n".encode())
    count = 0
    for record in records:
        out.write(_text(record))
        count += 1
    out.write(f"</{tag}>\n".encode())
    return count


def export_stats(folder: Path, *, now: datetime) -> dict[str, int]:
    """Write user.gz, team.gz, host.gz, user_deleted.gz and tables.xml into ``folder`` (which
    must exist); returns how many users, teams, hosts and deleted users. Readers see the old
    files or the new ones: each is written under a temporary name and renamed only when all
    are written."""
    folder = Path(folder)
    ensure_cross_project_ids()
    producers: dict[str, Callable[[], Iterator[ET.Element]]] = {
        "users": user_records,
        "teams": team_records,
        "hosts": host_records,
        "users_deleted": deleted_records,
    }
    counts: dict[str, int] = {}
    written: list[tuple[Path, Path]] = []
    try:
        with export_snapshot():
            for table, name in FILES.items():
                with (
                    _temporary(folder, name, written) as raw,
                    gzip.GzipFile(
                        filename=name.removesuffix(".gz"), mode="wb", fileobj=raw, mtime=unix(now)
                    ) as gz,
                ):
                    counts[table] = write_records(gz, table, producers[table]())
            total = exported_volunteers().aggregate(total=Sum("total_credit"))["total"]
            root = tables(counts, total_credit=total or Decimal(0), now=now)
        with _temporary(folder, TABLES, written) as raw:
            raw.write(DECLARATION + _text(root))
        for temp, final in written:
            os.replace(temp, final)
    except BaseException:
        for temp, _ in written:
            temp.unlink(missing_ok=True)
        raise
    return counts


@contextmanager
def _temporary(folder: Path, name: str, written: list[tuple[Path, Path]]) -> Iterator[IO[bytes]]:
    """A new file beside ``name`` in ``folder``, world-readable like the files it stands in
    for and on disk when the block ends; (its path, ``name``'s path) is added to ``written``.
    Removed if the block fails."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", suffix=".tmp", delete=False) as handle:
        temp = Path(handle.name)
        try:
            os.chmod(temp, 0o644)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    written.append((temp, folder / name))
