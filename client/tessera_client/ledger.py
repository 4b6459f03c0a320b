"""The credit ledger's format, and a verifier any volunteer can run without the database.

Every credit grant is one entry of a hash chain: each entry's hash covers its fields and
the hash of the entry before it. The project signs the chain head (a *seal*) with its
Ed25519 key at intervals. An export is JSON Lines: a header with the project's public key,
the entries in order, the seals, and the totals the coordinator keeps per volunteer.

    python -m tessera_client.ledger verify ledger.jsonl [--public-key BASE64]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tessera_client.signing import b64decode, signature_is_valid

FORMAT = "tessera-ledger-v1"
GENESIS_HASH = "0" * 64
ENTRY_FIELDS = ("seq", "volunteer", "host", "replica", "unit", "credit", "granted_at")


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over the entry's fields, in a fixed order, and the previous hash."""
    body = {name: entry[name] for name in ENTRY_FIELDS}
    body["prev"] = prev_hash
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_message(seq: int, head_hash: str, sealed_at: str) -> bytes:
    """The bytes the project signs to vouch for the chain up to entry ``seq``."""
    return f"tessera-ledger-seal-v1\n{seq}\n{head_hash}\n{sealed_at}".encode()


@dataclass
class Verification:
    ok: bool
    entries: int = 0
    seals: int = 0
    first_bad: int | None = None  # the seq (or line) of the first entry that does not check
    problem: str = ""
    totals: dict[str, Decimal] = field(default_factory=dict)

    def summary(self) -> str:
        if self.ok:
            return (
                f"ledger verified: {self.entries} entries, {self.seals} seals, {len(self.totals)} volunteers"
            )
        where = f" at entry {self.first_bad}" if self.first_bad is not None else ""
        return f"ledger does NOT verify{where}: {self.problem}"


class _Bad(Exception):
    def __init__(self, where: int | None, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


def _amount(text: Any, seq: int | None) -> Decimal:
    try:
        value = Decimal(str(text))
    except InvalidOperation as error:
        raise _Bad(seq, f"credit {text!r} is not a number") from error
    if not value.is_finite() or value < 0:
        raise _Bad(seq, f"credit {text!r} is not a non-negative amount")
    return value


def _check(records: list[dict[str, Any]], public_key: str | None, result: Verification) -> None:
    if not records or records[0].get("kind") != "header" or records[0].get("format") != FORMAT:
        raise _Bad(None, f"the first line must be a {FORMAT} header")
    key_text = public_key or records[0].get("public_key", "")
    try:
        key = b64decode(key_text)
    except ValueError as error:
        raise _Bad(None, "the project's public key is not base64") from error

    hashes: dict[int, str] = {}
    prev_hash, expected_seq = GENESIS_HASH, 1
    stored_totals: dict[str, Any] | None = None
    last_sealed = 0
    for record in records[1:]:
        if not isinstance(record, dict):
            raise _Bad(None, "a line is not a JSON object")
        kind = record.get("kind")
        if kind == "entry":
            seq = record.get("seq")
            if seq != expected_seq:
                raise _Bad(
                    seq if isinstance(seq, int) else expected_seq,
                    f"expected entry {expected_seq} next, found {seq!r} (removed or reordered)",
                )
            if record.get("prev") != prev_hash:
                raise _Bad(seq, "its previous-hash does not match the entry before it")
            if any(name not in record for name in ENTRY_FIELDS):
                raise _Bad(seq, "a field is missing")
            if entry_hash(record, prev_hash) != record.get("hash"):
                raise _Bad(seq, "its hash does not match its content (changed)")
            volunteer = str(record["volunteer"])
            result.totals[volunteer] = result.totals.get(volunteer, Decimal(0)) + _amount(
                record["credit"], seq
            )
            prev_hash = hashes[seq] = record["hash"]
            expected_seq += 1
            result.entries += 1
        elif kind == "seal":
            seq = record.get("seq")
            if seq not in hashes or hashes[seq] != record.get("head"):
                raise _Bad(
                    seq if isinstance(seq, int) else None, "a seal names a head the chain does not have"
                )
            try:
                signature = b64decode(str(record.get("signature", "")))
            except ValueError:
                signature = b""
            if not signature_is_valid(
                key, seal_message(seq, record["head"], str(record.get("sealed_at"))), signature
            ):
                raise _Bad(seq, "the seal's signature is not the project's")
            result.seals += 1
            last_sealed = max(last_sealed, seq)
        elif kind == "totals":
            stored_totals = record.get("volunteers", {})
            if not isinstance(stored_totals, dict):
                raise _Bad(None, "the totals line must map volunteers to amounts")
        else:
            raise _Bad(None, f"unknown record kind {kind!r}")
    if result.entries and result.seals == 0:
        raise _Bad(None, "no seal signs the chain")
    if result.entries and last_sealed != expected_seq - 1:
        raise _Bad(last_sealed + 1, "entries after the last seal are not signed by the project")
    if stored_totals is not None:
        for volunteer in sorted(set(stored_totals) | set(result.totals)):
            stored = _amount(stored_totals.get(volunteer, "0"), None)
            if stored != result.totals.get(volunteer, Decimal(0)):
                raise _Bad(
                    None,
                    f"volunteer {volunteer}: stored total {stored} but the entries add up to "
                    f"{result.totals.get(volunteer, Decimal(0))}",
                )


def verify_records(records: Iterable[dict[str, Any]], public_key: str | None = None) -> Verification:
    """Recompute every hash, check every seal and each volunteer's total."""
    result = Verification(ok=False)
    try:
        _check(list(records), public_key, result)
    except _Bad as bad:
        result.first_bad, result.problem = bad.where, bad.problem
        return result
    except (TypeError, AttributeError, KeyError, ValueError) as error:  # a field of the wrong type
        result.problem = f"malformed record: {error}"
        return result
    result.ok = True
    return result


def verify_file(path: Path, public_key: str | None = None) -> Verification:
    records = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                return Verification(ok=False, problem=f"line {number} is not JSON")
    return verify_records(records, public_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tessera_client.ledger", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="verify an exported ledger")
    check.add_argument("file", type=Path)
    check.add_argument("--public-key", help="the project's public key (base64); default: the one in the file")
    args = parser.parse_args(argv)
    result = verify_file(args.file, args.public_key)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
