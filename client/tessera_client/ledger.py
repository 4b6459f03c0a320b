"""The credit ledger's format, and a verifier any volunteer can run without the database.

Every credit grant is one entry of a hash chain: each entry's hash covers its fields and
the hash of the entry before it. Credit taken back from a caught cheater is a *reversal*,
a later entry of the same chain that names the grant it compensates. The project signs the
chain head (a *seal*) with its Ed25519 key at intervals. An export is JSON Lines: a header
with the project's public key, the entries in order, the seals, and the totals the
coordinator keeps per volunteer.

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

# v2 added reversals (a v1 file, grants only, still verifies), v3 a wasm grant's fuel, v4 the
# "trust": "bearer" of a stock BOINC client's host's grants (docs/ledger.md).
FORMAT = "tessera-ledger-v4"
FORMATS = ("tessera-ledger-v1", "tessera-ledger-v2", "tessera-ledger-v3", FORMAT)
REVERSAL_FORMATS = ("tessera-ledger-v2", "tessera-ledger-v3", FORMAT)
FUEL_FORMATS = ("tessera-ledger-v3", FORMAT)
BEARER = "bearer"
GENESIS_HASH = "0" * 64
ENTRY_FIELDS = ("seq", "volunteer", "host", "replica", "unit", "credit", "granted_at")
REVERSAL_FIELDS = (*ENTRY_FIELDS, "reverses")
MATCHED_FIELDS = ("volunteer", "host", "replica", "unit")  # a reversal's, as its grant's
ID_FIELDS = ("seq", *MATCHED_FIELDS)
# Limits on what a line may be, so that a hostile file is refused, not a crash or a hang.
# The totals line grows with the volunteers (about 30 bytes each); every other line is short.
MAX_LINE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 4  # the deepest record, the totals line, is an object in an object
MAX_INT_DIGITS = 20  # ids and seqs are 64-bit
MAX_CREDIT_DIGITS = 20  # whole digits of an amount (the coordinator keeps 14)


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over a grant's fields, its fuel when it has one (a wasm replica's, from
    v3), its host's trust when that is a bearer key's (from v4), and the previous hash."""
    body = {name: entry[name] for name in ENTRY_FIELDS}
    if entry.get("fuel") is not None:
        body["fuel"] = entry["fuel"]
    if entry.get("trust") is not None:  # from v4: a BOINC client's host, "bearer"
        body["trust"] = entry["trust"]
    body["prev"] = prev_hash
    return _digest(body)


def reversal_hash(reversal: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over a reversal's fields, the seq of the grant it reverses, its kind and the
    previous hash. The kind is hashed, so a reversal cannot be passed off as a grant."""
    body = {name: reversal[name] for name in REVERSAL_FIELDS}
    body["kind"] = "reversal"
    body["prev"] = prev_hash
    return _digest(body)


def seal_message(seq: int, head_hash: str, sealed_at: str) -> bytes:
    """The bytes the project signs to vouch for the chain up to entry ``seq``."""
    return f"tessera-ledger-seal-v1\n{seq}\n{head_hash}\n{sealed_at}".encode()


@dataclass
class Verification:
    ok: bool
    entries: int = 0  # grants and reversals: every entry of the chain
    seals: int = 0
    first_bad: int | None = None  # the seq (or line) of the first entry that does not check
    problem: str = ""
    totals: dict[str, Decimal] = field(default_factory=dict)
    reversals: int = 0

    def summary(self) -> str:
        if self.ok:
            reversed_ = f" ({self.reversals} reversals)" if self.reversals else ""
            return (
                f"ledger verified: {self.entries} entries{reversed_}, {self.seals} seals, "
                f"{len(self.totals)} volunteers"
            )
        where = f" at entry {self.first_bad}" if self.first_bad is not None else ""
        return f"ledger does NOT verify{where}: {self.problem}"


class _Bad(Exception):
    def __init__(self, where: int | None, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


def _shown(value: Any) -> str:
    """A value from the file as a message quotes it: never a whole hostile line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _why(error: Exception) -> str:
    return str(error)[:80] or type(error).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_extras(record: dict[str, Any], format_: str, line: int) -> None:
    """A grant's fuel (a wasm replica's, from v3 on) is a whole number of at least 0, and its
    trust (from v4 on) is only ever "bearer" (a BOINC client's host)."""
    fuel = record.get("fuel", 0)
    if "fuel" in record and (format_ not in FUEL_FORMATS or not _is_int(fuel) or fuel < 0):
        raise _Bad(None, f"a grant's fuel must be a whole number, in a v3 or v4 file (line {line})")
    if "trust" in record and (format_ != FORMAT or record["trust"] != BEARER):
        raise _Bad(None, f'a grant\'s trust must be "{BEARER}", in a {FORMAT} file (line {line})')


def _amount(text: Any, seq: int | None) -> Decimal:
    try:
        value = Decimal(str(text))
    except InvalidOperation as error:
        raise _Bad(seq, f"credit {_shown(text)} is not a number") from error
    if not value.is_finite() or value < 0:
        raise _Bad(seq, f"credit {_shown(text)} is not a non-negative amount")
    if value and value.adjusted() >= MAX_CREDIT_DIGITS:
        raise _Bad(seq, f"credit {_shown(text)} is out of range")
    return value


def _header_format(records: list[Any]) -> str:
    header = records[0] if records else None
    if not isinstance(header, dict) or header.get("kind") != "header" or header.get("format") not in FORMATS:
        raise _Bad(None, f"the first line must be a ledger header ({', '.join(FORMATS)})")
    return header["format"]


class _Chain:
    """The entries read so far: their hashes, the grants and which of them are reversed."""

    def __init__(self, result: Verification) -> None:
        self.result = result
        self.hashes: dict[int, str] = {}
        self.grants: dict[int, dict[str, Any]] = {}
        self.reversed_by: dict[int, int] = {}
        self.prev_hash = GENESIS_HASH
        self.expected_seq = 1

    def add(self, record: dict[str, Any], reversal: bool) -> None:
        seq = record.get("seq")
        if not _is_int(seq) or seq != self.expected_seq:
            raise _Bad(
                seq if _is_int(seq) else self.expected_seq,
                f"expected entry {self.expected_seq} next, found {_shown(seq)} (removed or reordered)",
            )
        if record.get("prev") != self.prev_hash:
            raise _Bad(seq, "its previous-hash does not match the entry before it")
        if any(name not in record for name in (REVERSAL_FIELDS if reversal else ENTRY_FIELDS)):
            raise _Bad(seq, "a field is missing")
        if not all(_is_int(record[name]) for name in ID_FIELDS):
            raise _Bad(seq, "its seq, volunteer, host, replica and unit must be whole numbers")
        digest = (reversal_hash if reversal else entry_hash)(record, self.prev_hash)
        if digest != record.get("hash"):
            raise _Bad(seq, "its hash does not match its content (changed)")
        amount = _amount(record["credit"], seq)
        volunteer = str(record["volunteer"])
        totals = self.result.totals
        if reversal:
            self._match(record, amount)
            totals[volunteer] = totals.get(volunteer, Decimal(0)) - amount
            self.result.reversals += 1
        else:
            self.grants[seq] = record
            totals[volunteer] = totals.get(volunteer, Decimal(0)) + amount
        self.prev_hash = self.hashes[seq] = digest
        self.expected_seq += 1
        self.result.entries += 1

    def _match(self, record: dict[str, Any], amount: Decimal) -> None:
        """A reversal must take back exactly one earlier grant, once."""
        seq, target = record["seq"], record["reverses"]
        grant = self.grants.get(target) if _is_int(target) else None
        if grant is None:
            raise _Bad(seq, f"it reverses entry {_shown(target)}, which is not an earlier grant")
        if target in self.reversed_by:
            raise _Bad(seq, f"grant {target} is already reversed (by entry {self.reversed_by[target]})")
        for name in MATCHED_FIELDS:
            if record[name] != grant[name]:
                raise _Bad(seq, f"its {name} is not the {name} of grant {target}, which it reverses")
        if amount != _amount(grant["credit"], target):
            raise _Bad(seq, f"its credit is not the credit of grant {target}, which it reverses")
        self.reversed_by[target] = seq

    def seal(self, record: dict[str, Any], key: bytes) -> int:
        seq = record.get("seq")
        if not _is_int(seq) or seq not in self.hashes or self.hashes[seq] != record.get("head"):
            raise _Bad(seq if _is_int(seq) else None, "a seal names a head the chain does not have")
        try:
            signature = b64decode(str(record.get("signature", "")))
        except ValueError:
            signature = b""
        if not signature_is_valid(
            key, seal_message(seq, record["head"], str(record.get("sealed_at"))), signature
        ):
            raise _Bad(seq, "the seal's signature is not the project's")
        self.result.seals += 1
        return seq


def _check(
    records: list[Any], public_key: str | None, result: Verification, lines: list[int] | None = None
) -> None:
    format_ = _header_format(records)
    key_text = public_key or records[0].get("public_key", "")
    try:
        key = b64decode(key_text)
    except ValueError as error:
        raise _Bad(None, "the project's public key is not base64") from error

    chain = _Chain(result)
    stored_totals: dict[str, Any] | None = None
    last_sealed = 0
    for index, record in enumerate(records[1:], start=1):
        line = lines[index] if lines else index + 1
        if not isinstance(record, dict):
            raise _Bad(None, f"a line is not a JSON object (line {line})")
        if stored_totals is not None:
            raise _Bad(None, f"the totals line must be the last line (line {line} follows it)")
        kind = record.get("kind")
        try:
            if kind == "entry":
                _check_extras(record, format_, line)
                chain.add(record, reversal=False)
            elif kind == "reversal":
                if format_ not in REVERSAL_FORMATS:
                    raise _Bad(None, f"a {format_} file cannot hold reversals (line {line})")
                chain.add(record, reversal=True)
            elif kind == "seal":
                last_sealed = max(last_sealed, chain.seal(record, key))
            elif kind == "totals":
                stored_totals = record.get("volunteers", {})
                if not isinstance(stored_totals, dict):
                    raise _Bad(None, "the totals line must map volunteers to amounts")
            else:
                raise _Bad(None, f"unknown record kind {_shown(kind)} (line {line})")
        except (TypeError, AttributeError, KeyError, ValueError, ArithmeticError) as error:
            raise _Bad(None, f"line {line} is malformed: {_why(error)}") from error
    if result.entries == 0:
        raise _Bad(None, "no entries: the file holds no ledger entry, so there is nothing to verify")
    if result.seals == 0:
        raise _Bad(None, "no seal signs the chain")
    if last_sealed != chain.expected_seq - 1:
        raise _Bad(last_sealed + 1, "entries after the last seal are not signed by the project")
    if stored_totals is not None:
        _check_totals(stored_totals, result)


def _check_totals(stored_totals: dict[str, Any], result: Verification) -> None:
    """The totals the coordinator stored must be what the entries add up to, volunteer by volunteer."""
    for volunteer in sorted(set(stored_totals) | set(result.totals)):
        stored = _amount(stored_totals.get(volunteer, "0"), None)
        if stored != result.totals.get(volunteer, Decimal(0)):
            raise _Bad(
                None,
                f"volunteer {str(volunteer)[:40]}: stored total {stored} but the entries add up to "
                f"{result.totals.get(volunteer, Decimal(0))}",
            )


def _verify(records: list[Any], public_key: str | None, lines: list[int] | None) -> Verification:
    result = Verification(ok=False)
    try:
        _check(records, public_key, result, lines)
    except _Bad as bad:
        result.first_bad, result.problem = bad.where, bad.problem
        return result
    except (TypeError, AttributeError, KeyError, ValueError, ArithmeticError, RecursionError) as error:
        result.problem = f"malformed record: {_why(error)}"
        return result
    result.ok = True
    return result


def verify_records(records: Iterable[dict[str, Any]], public_key: str | None = None) -> Verification:
    """Recompute every hash, check every reversal, every seal and each volunteer's total."""
    return _verify(list(records), public_key, None)


class _Unreadable(Exception):
    """A line that is not a ledger record's JSON; the message says why."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON allows a key twice and Python keeps the last; a ledger line may not do that,
    or a file could show one amount to one reader and another to the next."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _Unreadable(f"has the key {_shown(key)} twice")
        record[key] = value
    return record


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Unreadable(f"has a number longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _no_constant(text: str) -> Any:
    raise _Unreadable(f"has {text}, which is not a number")


def _depth(value: Any) -> int:
    """How deep arrays and objects nest, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _parse_line(raw: bytes) -> Any:
    """One line of an export as JSON, or ``_Unreadable`` saying why it is not a record."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Unreadable("is not UTF-8 text") from error
    try:
        value = json.loads(
            text, object_pairs_hook=_unique_keys, parse_int=_whole_number, parse_constant=_no_constant
        )
    except RecursionError as error:
        raise _Unreadable("is nested too deeply") from error
    except ValueError as error:
        raise _Unreadable("is not JSON") from error
    if _depth(value) > MAX_DEPTH:
        raise _Unreadable("is nested too deeply")
    return value


def verify_file(path: Path, public_key: str | None = None) -> Verification:
    """Read an export line by line and verify it; raises ``OSError`` when it cannot be read."""
    records: list[Any] = []
    lines = [0]  # the line each record came from (lines[0] is never used for the header)
    with Path(path).open("rb") as handle:
        number = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                return Verification(ok=False, problem=f"line {number} is longer than {MAX_LINE_BYTES} bytes")
            if not raw.strip():
                continue
            try:
                records.append(_parse_line(raw))
            except _Unreadable as error:
                return Verification(ok=False, problem=f"line {number} {error}")
            lines.append(number)
    return _verify(records, public_key, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tessera_client.ledger", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="verify an exported ledger")
    check.add_argument("file", type=Path)
    check.add_argument("--public-key", help="the project's public key (base64); default: the one in the file")
    args = parser.parse_args(argv)
    try:
        result = verify_file(args.file, args.public_key)
    except OSError as error:
        print(f"cannot read {args.file}: {error.strerror or error}")
        return 2
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
