"""The credit ledger from the command line: ``export``, ``verify`` and ``seal``.

``export`` seals the head first, so an export always ends with a seal on its last entry, and
reads everything inside one snapshot. ``verify`` is the volunteers' own verifier
(``tessera_client.ledger``), pinned by default to this project's public key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone
from nacl.signing import SigningKey
from tessera_client.ledger import verify_file

from coordinator.core import keys
from coordinator.validation import ledger
from coordinator.validation.models import LedgerHead, LedgerSeal

# Each attempt seals the head and then opens the snapshot; grants landing in between leave
# the snapshot's head unsealed, and the next attempt seals that one.
EXPORT_ATTEMPTS = 5


@contextmanager
def export_snapshot() -> Iterator[None]:
    """One consistent read of entries, seals and totals.

    On PostgreSQL a REPEATABLE READ, READ ONLY transaction: one snapshot that blocks no
    validator. On SQLite a transaction, which holds the write lock (IMMEDIATE), so grants
    wait for the export to finish. Inside a caller's transaction, that one is the snapshot.
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _head_is_sealed() -> bool:
    head = LedgerHead.objects.filter(id=1).first()
    return head is None or head.seq == 0 or LedgerSeal.objects.filter(seq=head.seq).exists()


class Command(BaseCommand):
    help = "Export the credit ledger, verify an export, or seal the chain's head now."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{export,verify,seal}")
        export = actions.add_parser("export", help="write the sealed ledger as JSON Lines")
        export.add_argument("--output", "-o", help="file to write (default: standard output)")
        verify = actions.add_parser("verify", help="check every hash, seal and total of an export")
        verify.add_argument("file", help="an exported ledger (JSON Lines)")
        verify.add_argument(
            "--public-key",
            help="the project's public key (base64) to check seals against; default: this "
            "project's key when its key file is here, else the key in the file's header",
        )
        actions.add_parser("seal", help="sign the chain's head with the project's key, unless signed")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "export":
            self.export(options["output"])
        elif action == "verify":
            self.verify(Path(options["file"]), options["public_key"])
        else:
            self.seal()

    def _project_key(self) -> SigningKey:
        try:
            return keys.load_project_key()
        except keys.ProjectKeyError as error:
            raise CommandError(str(error)) from error

    def seal(self) -> None:
        made = ledger.seal(key=self._project_key(), now=timezone.now())
        if made is not None:
            self.stdout.write(f"sealed the ledger's head at entry {made.seq}")
            return
        head = LedgerHead.objects.filter(id=1).first()
        if head is None or head.seq == 0:
            self.stdout.write("the ledger is empty: nothing to seal")
        else:
            self.stdout.write(f"the ledger's head (entry {head.seq}) is already sealed")

    def export(self, output: str | None) -> None:
        key = self._project_key()
        public_key = keys.public_key_b64(key)
        for _ in range(EXPORT_ATTEMPTS):
            ledger.seal(key=key, now=timezone.now())
            with export_snapshot():
                if not _head_is_sealed():
                    continue
                records = ledger.export_records(public_key=public_key, now=timezone.now())
                if output is None:
                    counts = self._write(records, self.stdout)
                else:
                    counts = self._write_file(records, Path(output))
            where = "standard output" if output is None else output
            entries = counts["entry"] + counts["reversal"]
            reversed_ = f" ({counts['reversal']} reversals)" if counts["reversal"] else ""
            message = f"exported {entries} entries{reversed_} and {counts['seal']} seals to {where}"
            # With the ledger on standard output, the summary must not be mixed into it.
            (self.stderr if output is None else self.stdout).write(message, style_func=str)
            return
        raise CommandError(
            f"the ledger grew during each of {EXPORT_ATTEMPTS} attempts to seal and export it; try again"
        )

    @staticmethod
    def _write(records: Iterator[dict[str, Any]], out: Any) -> dict[str, int]:
        counts = {"entry": 0, "reversal": 0, "seal": 0}
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            if record["kind"] in counts:
                counts[record["kind"]] += 1
        return counts

    def _write_file(self, records: Iterator[dict[str, Any]], path: Path) -> dict[str, int]:
        """Write beside the target and rename, so a failed export leaves no half file."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with temporary.open("w", encoding="utf-8") as handle:
                counts = self._write(records, handle)
            os.replace(temporary, path)
        except OSError as error:
            raise CommandError(f"cannot write {path}: {error}") from error
        finally:
            temporary.unlink(missing_ok=True)
        return counts

    def verify(self, path: Path, public_key: str | None) -> None:
        if public_key:
            self.stdout.write("checking seals against the public key given on the command line")
        elif keys.project_key_exists():
            public_key = keys.public_key_b64(self._project_key())
            self.stdout.write(
                f"checking seals against this project's public key {keys.fingerprint(public_key)}"
            )
        else:
            self.stdout.write(
                f"no project key file at {keys.project_key_path()}: checking seals against the key "
                "in the file's header, which proves nothing about who made it (pass --public-key)"
            )
        try:
            result = verify_file(path, public_key)
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read {path}: {error}") from error
        if not result.ok:
            raise CommandError(result.summary())
        self.stdout.write(result.summary())
        total = sum(result.totals.values())
        if result.reversals:
            self.stdout.write(f"total credit granted, less {result.reversals} reversals: {total:.6f}")
        else:
            self.stdout.write(f"total credit granted: {total:.6f}")
