"""The ledger format and its verifier, on a chain built by hand: no coordinator, no database."""

import base64
import copy
import hashlib
import json
from decimal import Decimal
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from tessera_client import ledger
from tessera_client.ledger import (
    ENTRY_FIELDS,
    FORMAT,
    GENESIS_HASH,
    REVERSAL_FIELDS,
    entry_hash,
    reversal_hash,
    seal_message,
    verify_file,
    verify_records,
)
from tessera_client.signing import b64encode

try:  # the client's Python 3.9 pass installs only pytest
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:
    given = None

PROJECT_KEY = SigningKey(b"\x11" * 32)
OTHER_KEY = SigningKey(b"\x22" * 32)
GRANTS = [  # (volunteer, host, credit)
    (1, 10, "8.333333"),
    (2, 20, "8.333333"),
    (1, 11, "0.500000"),
    (3, 30, "12.000000"),
    (2, 20, "1.250000"),
]


def public(key):
    return b64encode(bytes(key.verify_key))


def seal(seq, head, key=PROJECT_KEY, sealed_at="2025-01-02T03:04:05+00:00"):
    signature = key.sign(seal_message(seq, head, sealed_at)).signature
    return {
        "kind": "seal",
        "seq": seq,
        "head": head,
        "sealed_at": sealed_at,
        "signature": b64encode(signature),
    }


def chain_hash(record, prev):
    return (reversal_hash if record["kind"] == "reversal" else entry_hash)(record, prev)


def rehash(records, start=1):
    """Recompute every entry's previous-hash and hash from ``start`` on, as a forger would."""
    prev = GENESIS_HASH
    for record in records:
        if record.get("kind") not in ("entry", "reversal"):
            continue
        if record["seq"] >= start:
            record["prev"] = prev
            record["hash"] = chain_hash(record, prev)
        prev = record["hash"]
    return records


def reseal(records, key=PROJECT_KEY):
    """Rehash the chain and sign every seal again with the project's key: what a coordinator
    that chained a wrong reversal would export, so only the verifier's own checks catch it."""
    rehash(records)
    heads = {r["seq"]: r["hash"] for r in records if r.get("kind") in ("entry", "reversal")}
    for record in records:
        if record.get("kind") == "seal":
            record.update(seal(record["seq"], heads[record["seq"]], key))
    return records


def grant_fields(seq, volunteer, host, credit):
    return {
        "seq": seq,
        "volunteer": volunteer,
        "host": host,
        "replica": 100 + seq,
        "unit": 1000 + seq // 2,
        "credit": credit,
        "granted_at": f"2025-01-01T00:00:{seq:02d}+00:00",
    }


def build(grants=GRANTS, seal_at=(3, 5), key=PROJECT_KEY, header_format=FORMAT):
    """A header, one entry per item of ``grants``, seals at the given entries, and the
    matching totals. An item is a grant (volunteer, host, credit), or the seq of the grant
    that a reversal at this place takes back."""
    records = [
        {
            "kind": "header",
            "format": header_format,
            "public_key": public(key),
            "exported_at": "2025-01-03T00:00:00+00:00",
        }
    ]
    prev, heads, totals = GENESIS_HASH, {}, {}
    for seq, item in enumerate(grants, start=1):
        if isinstance(item, int):
            fields = grant_fields(item, *grants[item - 1])
            record = {
                "kind": "reversal",
                **fields,
                "seq": seq,
                "granted_at": f"2025-01-02T00:00:{seq:02d}+00:00",
                "reverses": item,
            }
            sign = -1
        else:
            record, sign = {"kind": "entry", **grant_fields(seq, *item)}, 1
        record["prev"] = prev
        record["hash"] = prev = heads[seq] = chain_hash(record, record["prev"])
        records.append(record)
        volunteer = str(record["volunteer"])
        totals[volunteer] = totals.get(volunteer, Decimal(0)) + sign * Decimal(record["credit"])
    records.extend(seal(seq, heads[seq], key) for seq in seal_at)
    records.append({"kind": "totals", "volunteers": {v: f"{t:.6f}" for v, t in totals.items() if t}})
    return records


def entry(records, seq):
    return next(r for r in records if r.get("kind") in ("entry", "reversal") and r["seq"] == seq)


def seal_record(records, seq):
    return next(r for r in records if r.get("kind") == "seal" and r["seq"] == seq)


def test_the_entry_hash_is_sha256_of_sorted_compact_json_with_the_previous_hash():
    record = entry(build(), 1)
    body = {name: record[name] for name in ENTRY_FIELDS}
    body["prev"] = GENESIS_HASH

    expected = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert entry_hash(record, GENESIS_HASH) == expected
    assert entry_hash({**record, "kind": "other", "hash": "x"}, GENESIS_HASH) == expected, "only fields count"


@pytest.mark.parametrize("name", [*ENTRY_FIELDS, "prev"])
def test_every_field_and_the_previous_hash_change_the_entry_hash(name):
    record = entry(build(), 2)
    before = entry_hash(record, record["prev"])
    changed = dict(record)
    if name == "prev":
        assert entry_hash(changed, "f" * 64) != before
    else:
        changed[name] = "changed"
        assert entry_hash(changed, record["prev"]) != before


def test_the_seal_message_names_the_scheme_the_entry_its_hash_and_the_time():
    assert seal_message(7, "ab" * 32, "2025-01-02T03:04:05+00:00") == (
        b"tessera-ledger-seal-v1\n7\n" + b"ab" * 32 + b"\n2025-01-02T03:04:05+00:00"
    )


def test_a_true_chain_verifies_and_adds_up_each_volunteer():
    result = verify_records(build(), public(PROJECT_KEY))

    assert result.ok, result.problem
    assert (result.entries, result.seals, result.first_bad) == (5, 2, None)
    assert result.totals == {"1": Decimal("8.833333"), "2": Decimal("9.583333"), "3": Decimal("12")}
    assert result.summary() == "ledger verified: 5 entries, 2 seals, 3 volunteers"


@pytest.mark.parametrize("totals_line", [True, False], ids=["header-and-totals", "header-only"])
def test_a_ledger_without_entries_does_not_verify_and_says_so(tmp_path, totals_line):
    records = build(grants=[], seal_at=())
    if not totals_line:
        records.pop()

    result = verify_file(write(tmp_path / "empty.jsonl", records), public(PROJECT_KEY))

    assert not result.ok and result.first_bad is None
    assert result.summary() == (
        "ledger does NOT verify: no entries: the file holds no ledger entry, so there is nothing to verify"
    )


def changed_amount(records):
    entry(records, 3)["credit"] = "80.500000"


def changed_amount_rehashed(records):
    """A forger who recomputes the hashes is caught by the first seal after the change."""
    entry(records, 4)["credit"] = "80.500000"
    rehash(records, start=4)


def removed_entry(records):
    records.remove(entry(records, 2))


def removed_last_entry(records):
    records.remove(entry(records, 5))


def reordered_entries(records):
    first, second = records.index(entry(records, 2)), records.index(entry(records, 3))
    records[first], records[second] = records[second], records[first]


def renumbered_after_removal(records):
    records.remove(entry(records, 2))
    for record in records:
        if record.get("kind") == "entry" and record["seq"] > 2:
            record["seq"] -= 1
    rehash(records)


def changed_signature(records):
    record = seal_record(records, 5)
    raw = bytearray(base64.b64decode(record["signature"]))
    raw[0] ^= 1
    record["signature"] = b64encode(bytes(raw))


def resealed_by_another_key(records):
    record = seal_record(records, 5)
    record.update(seal(5, record["head"], OTHER_KEY))


def changed_seal_time(records):
    seal_record(records, 3)["sealed_at"] = "2030-01-01T00:00:00+00:00"


def changed_total(records):
    records[-1]["volunteers"]["2"] = "99.583333"


def dropped_every_seal(records):
    records[:] = [r for r in records if r.get("kind") != "seal"]


def negative_credit(records):
    entry(records, 4)["credit"] = "-1.000000"
    rehash(records, start=4)


@pytest.mark.parametrize(
    ("tamper", "first_bad", "problem"),
    [
        (changed_amount, 3, "hash does not match its content"),
        (changed_amount_rehashed, 5, "a seal names a head the chain does not have"),
        (removed_entry, 3, "expected entry 2 next, found 3"),
        (removed_last_entry, 5, "a seal names a head the chain does not have"),
        (reordered_entries, 3, "expected entry 2 next, found 3"),
        (renumbered_after_removal, 3, "a seal names a head the chain does not have"),
        (changed_signature, 5, "signature is not the project's"),
        (resealed_by_another_key, 5, "signature is not the project's"),
        (changed_seal_time, 3, "signature is not the project's"),
        (changed_total, None, "volunteer 2: stored total 99.583333 but the entries add up to 9.583333"),
        (dropped_every_seal, None, "no seal signs the chain"),
        (negative_credit, 4, "not a non-negative amount"),
    ],
)
def test_tampering_is_found_and_the_first_bad_entry_named(tamper, first_bad, problem):
    records = copy.deepcopy(build())
    tamper(records)

    result = verify_records(records, public(PROJECT_KEY))

    assert not result.ok
    assert result.first_bad == first_bad
    assert problem in result.problem
    where = f" at entry {first_bad}: " if first_bad is not None else ": "
    assert result.summary().startswith("ledger does NOT verify" + where)


def test_a_chain_resealed_by_a_forger_passes_on_its_own_header_but_not_against_the_pinned_key():
    forged = build(key=OTHER_KEY)
    assert verify_records(forged).ok, "the header's key is all an unpinned check has"

    result = verify_records(forged, public(PROJECT_KEY))
    assert not result.ok and result.first_bad == 3 and "signature" in result.problem


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        (
            [],
            "the first line must be a ledger header "
            "(tessera-ledger-v1, tessera-ledger-v2, tessera-ledger-v3, tessera-ledger-v4)",
        ),
        ([{"kind": "header", "format": "other-v9"}], "the first line must be a ledger header"),
        ([[1]], "the first line must be a ledger header"),
        ([{"kind": "header", "format": FORMAT, "public_key": "not base64!"}], "not base64"),
        ([{"kind": "header", "format": FORMAT, "public_key": ""}, {"kind": "gift"}], "unknown record kind"),
    ],
)
def test_a_malformed_export_is_refused(records, problem):
    result = verify_records(records)
    assert not result.ok and problem in result.problem


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_verify_file_reads_json_lines_and_names_a_line_that_is_not_json(tmp_path):
    good = write(tmp_path / "ledger.jsonl", build())
    assert verify_file(good).ok

    broken = tmp_path / "broken.jsonl"
    broken.write_text(good.read_text().replace('"kind": "seal"', '"kind: "seal"', 1), encoding="utf-8")
    result = verify_file(broken)
    assert not result.ok and result.problem == "line 7 is not JSON"


def test_the_command_line_says_whether_the_ledger_verifies(tmp_path, capsys):
    good = write(tmp_path / "good.jsonl", build())
    bad_records = build()
    changed_amount(bad_records)
    bad = write(tmp_path / "bad.jsonl", bad_records)

    assert ledger.main(["verify", str(good), "--public-key", public(PROJECT_KEY)]) == 0
    assert capsys.readouterr().out == "ledger verified: 5 entries, 2 seals, 3 volunteers\n"
    assert ledger.main(["verify", str(good), "--public-key", public(OTHER_KEY)]) == 1
    assert "at entry 3" in capsys.readouterr().out
    assert ledger.main(["verify", str(bad)]) == 1
    assert capsys.readouterr().out.startswith("ledger does NOT verify at entry 3:")


# --- what the verifier refuses outright ------------------------------------------------------


def test_an_entry_appended_after_the_last_seal_is_refused():
    records = build()
    totals = records.pop()
    last = entry(records, 5)
    forged = dict(last, seq=6, volunteer=3, credit="1000.000000", prev=last["hash"])
    forged["hash"] = entry_hash(forged, forged["prev"])
    records.insert(records.index(last) + 1, forged)
    totals["volunteers"]["3"] = "1012.000000"
    records.append(totals)

    result = verify_records(records, public(PROJECT_KEY))

    assert not result.ok and result.first_bad == 6
    assert result.problem == "entries after the last seal are not signed by the project"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ([1], "a line is not a JSON object (line 9)"),
        ({"kind": "seal", "seq": [6]}, "a seal names a head the chain does not have"),
        ({"kind": "seal", "seq": 5, "head": entry(build(), 5)["hash"], "signature": 7}, "signature"),
        ({"kind": "totals", "volunteers": {}}, "the totals line must be the last line (line 10 follows it)"),
    ],
    ids=["not-an-object", "unhashable-seq", "signature-not-text", "second-totals"],
)
def test_a_malformed_line_is_reported_not_raised(line, problem):
    records = build()
    records.insert(len(records) - 1, line)

    result = verify_records(records, public(PROJECT_KEY))

    assert not result.ok and problem in result.problem


@pytest.mark.parametrize(
    ("volunteers", "problem"),
    [
        (["1"], "the totals line must map volunteers to amounts"),
        ({"1": [1]}, "credit [1] is not a number"),
        ({"1": "1e99"}, "credit '1e99' is out of range"),
        ({"1": "-8.833333"}, "credit '-8.833333' is not a non-negative amount"),
    ],
    ids=["not-an-object", "list-total", "huge", "negative"],
)
def test_a_malformed_totals_line_is_reported_not_raised(volunteers, problem):
    records = build()
    records[-1]["volunteers"] = volunteers

    result = verify_records(records, public(PROJECT_KEY))

    assert not result.ok and result.problem == problem


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("seq", True, "expected entry 2 next, found True"),
        ("volunteer", "2", "must be whole numbers"),
        ("replica", None, "must be whole numbers"),
        ("credit", {"a": 1}, "is not a number"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_at_its_entry(name, value, problem):
    records = build()
    entry(records, 2)[name] = value
    rehash(records, start=2)

    result = verify_records(records, public(PROJECT_KEY))

    assert not result.ok and result.first_bad == 2 and problem in result.problem


def lines_of(records):
    return [json.dumps(r) for r in records]


def write_lines(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def test_a_key_given_twice_on_a_line_is_refused_naming_the_line(tmp_path):
    """Python's json keeps the last of two equal keys; another reader may keep the first. A
    line that says two amounts must not verify as either."""
    lines = lines_of(build())
    assert lines[2].count('"credit": "8.333333"') == 1
    lines[2] = lines[2].replace('"credit": "8.333333"', '"credit": "8.333333", "credit": "999.000000"')

    result = verify_file(write_lines(tmp_path / "twice.jsonl", lines), public(PROJECT_KEY))

    assert not result.ok and result.problem == "line 3 has the key 'credit' twice"


def test_a_key_given_twice_in_the_totals_is_refused(tmp_path):
    lines = lines_of(build())
    lines[-1] = lines[-1].replace('{"1": ', '{"1": "0.000000", "1": ', 1)
    assert lines[-1].count('"1": ') == 2

    result = verify_file(write_lines(tmp_path / "twice.jsonl", lines), public(PROJECT_KEY))

    assert not result.ok and result.problem == f"line {len(lines)} has the key '1' twice"


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("[" * 100_000, "is nested too deeply"),
        ('{"kind": "entry", "seq": ' + "[" * 100_000 + "]" * 100_000 + "}", "is nested too deeply"),
        ('{"kind": "totals", "volunteers": ' + "[" * 20 + "]" * 20 + "}", "is nested too deeply"),
        ('{"kind": "entry", "seq": 1' + "0" * 40 + "}", "has a number longer than 20 digits"),
        ('{"kind": "totals", "volunteers": {"1": NaN}}', "has NaN, which is not a number"),
        (b'{"kind": "\xff\xfe"}', "is not UTF-8 text"),
        ("{oops", "is not JSON"),
    ],
    ids=["deep-array", "deep-field", "deep-totals", "long-number", "nan", "not-utf8", "not-json"],
)
def test_a_hostile_line_is_refused_with_a_clean_message(tmp_path, bad_line, problem):
    lines = lines_of(build())
    lines.insert(3, bad_line)

    result = verify_file(write_lines(tmp_path / "hostile.jsonl", lines), public(PROJECT_KEY))

    assert not result.ok and result.problem == f"line 4 {problem}"


def test_an_absurdly_long_line_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger, "MAX_LINE_BYTES", 1000)
    lines = lines_of(build())
    assert all(len(line) < 1000 for line in lines)
    fits = write_lines(tmp_path / "fits.jsonl", [*lines[:-1], lines[-1] + " " * (999 - len(lines[-1]))])
    assert verify_file(fits, public(PROJECT_KEY)).ok, "a line of exactly the limit is read"

    lines.insert(2, " " * 1001)
    result = verify_file(write_lines(tmp_path / "long.jsonl", lines), public(PROJECT_KEY))

    assert not result.ok and result.problem == "line 3 is longer than 1000 bytes"


def test_the_command_line_says_when_it_cannot_read_the_file(tmp_path, capsys):
    assert ledger.main(["verify", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().out.startswith(f"cannot read {tmp_path / 'missing.jsonl'}: ")


# --- reversals ---------------------------------------------------------------------------------

# Grant 2 (volunteer 2) and grant 4 (volunteer 3's only one) are taken back at entries 6 and 7.
REVERSED = [*GRANTS, 2, 4]


def test_reversals_verify_and_take_the_credit_back_from_the_totals():
    result = verify_records(build(REVERSED, seal_at=(3, 7)), public(PROJECT_KEY))

    assert result.ok, result.problem
    assert (result.entries, result.reversals, result.seals) == (7, 2, 2)
    assert result.totals == {"1": Decimal("8.833333"), "2": Decimal("1.25"), "3": Decimal(0)}
    assert result.summary() == "ledger verified: 7 entries (2 reversals), 2 seals, 3 volunteers"


def test_a_reversal_is_hashed_with_its_kind_and_the_grant_it_reverses():
    records = build(REVERSED, seal_at=(7,))
    reversal = entry(records, 6)
    body = {name: reversal[name] for name in REVERSAL_FIELDS}
    body.update(kind="reversal", prev=reversal["prev"])

    expected = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert reversal["hash"] == reversal_hash(reversal, reversal["prev"]) == expected
    assert reversal_hash(reversal, reversal["prev"]) != entry_hash(reversal, reversal["prev"])
    for name in (*REVERSAL_FIELDS, "prev"):
        changed = dict(reversal, **{name: "changed"})
        assert reversal_hash(changed, changed["prev"]) != reversal["hash"], name


def test_a_grant_only_v1_file_still_verifies_but_cannot_hold_reversals():
    old = build(header_format="tessera-ledger-v1")
    assert verify_records(old, public(PROJECT_KEY)).ok, "grant hashes are the same in both formats"

    result = verify_records(build(REVERSED, seal_at=(7,), header_format="tessera-ledger-v1"))
    assert not result.ok
    assert result.problem == "a tessera-ledger-v1 file cannot hold reversals (line 7)"


def reversal_of(records, seq):
    return entry(records, seq)


def reverses_a_missing_grant(records):
    reversal_of(records, 6)["reverses"] = 99


def reverses_a_later_entry(records):
    """A reversal may only name a grant that comes before it."""
    records[:] = build([*GRANTS[:2], 4, *GRANTS[2:]], seal_at=(6,))


def reverses_itself(records):
    reversal_of(records, 6)["reverses"] = 6


def reverses_a_reversal(records):
    first = entry(records, 6)
    records.insert(records.index(first) + 1, dict(first, seq=7, reverses=6))


def reverses_a_grant_twice(records):
    records[:] = build([*GRANTS, 2, 2], seal_at=(7,))


def reverses_another_volunteer(records):
    reversal_of(records, 6)["volunteer"] = 1


def reverses_another_host(records):
    reversal_of(records, 6)["host"] = 21


def reverses_another_replica(records):
    reversal_of(records, 6)["replica"] = 105


def reverses_another_unit(records):
    reversal_of(records, 6)["unit"] = 1002


def reverses_more_than_was_granted(records):
    reversal_of(records, 6)["credit"] = "9.583333"


def reverses_a_number_that_is_not_a_seq(records):
    reversal_of(records, 6)["reverses"] = "2"


# Each is chained and sealed with the project's key after the change, as a faulty coordinator
# would: (change, first_bad, problem)
BAD_REVERSALS = [
    (reverses_a_missing_grant, 6, "it reverses entry 99, which is not an earlier grant"),
    (reverses_a_later_entry, 3, "it reverses entry 4, which is not an earlier grant"),
    (reverses_itself, 6, "it reverses entry 6, which is not an earlier grant"),
    (reverses_a_reversal, 7, "it reverses entry 6, which is not an earlier grant"),
    (reverses_a_grant_twice, 7, "grant 2 is already reversed (by entry 6)"),
    (
        reverses_another_volunteer,
        6,
        "its volunteer is not the volunteer of grant 2, which it reverses",
    ),
    (reverses_another_host, 6, "its host is not the host of grant 2, which it reverses"),
    (reverses_another_replica, 6, "its replica is not the replica of grant 2, which it reverses"),
    (reverses_another_unit, 6, "its unit is not the unit of grant 2, which it reverses"),
    (reverses_more_than_was_granted, 6, "its credit is not the credit of grant 2, which it reverses"),
    (reverses_a_number_that_is_not_a_seq, 6, "it reverses entry '2', which is not an earlier grant"),
]


@pytest.mark.parametrize(
    ("change", "first_bad", "problem"), BAD_REVERSALS, ids=[c[0].__name__ for c in BAD_REVERSALS]
)
def test_a_reversal_that_does_not_take_back_exactly_one_earlier_grant_is_refused(change, first_bad, problem):
    records = build([*GRANTS, 2], seal_at=(6,))
    change(records)
    reseal(records)

    result = verify_records(records, public(PROJECT_KEY))

    assert not result.ok
    assert (result.first_bad, result.problem) == (first_bad, problem)


def test_a_reversal_turned_into_a_grant_is_refused():
    """Editing ``kind`` would turn 8.33 taken back into 8.33 more; the kind is in the hash."""
    records = build([*GRANTS, 2], seal_at=(6,))
    reversal = entry(records, 6)
    reversal["kind"] = "entry"
    records[-1]["volunteers"]["2"] = "17.916666"

    result = verify_records(records, public(PROJECT_KEY))
    assert (result.ok, result.first_bad) == (False, 6)
    assert result.problem == "its hash does not match its content (changed)"

    rehash(records, start=6)  # a forger without the project's key cannot sign it again
    result = verify_records(records, public(PROJECT_KEY))
    assert (result.ok, result.first_bad) == (False, 6)
    assert result.problem == "a seal names a head the chain does not have"


def test_a_grant_turned_into_a_reversal_is_refused():
    records = build(seal_at=(5,))
    entry(records, 5).update(kind="reversal", reverses=4)

    result = verify_records(records, public(PROJECT_KEY))

    assert (result.ok, result.first_bad) == (False, 5)
    assert result.problem == "its hash does not match its content (changed)"


DOCS_LEDGER = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


@pytest.mark.skipif(not DOCS_LEDGER.exists(), reason="the client package outside its repository")
def test_the_example_export_in_the_docs_verifies_with_its_reversal():
    text = DOCS_LEDGER.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith('{"kind":')]
    assert lines[0].startswith('{"kind":"header"') and lines[-1].startswith('{"kind":"totals"')
    example_key = public(SigningKey(b"\x42" * 32))

    result = verify_records([json.loads(line) for line in lines], example_key)

    assert result.ok, result.problem
    assert result.summary() == "ledger verified: 3 entries (1 reversals), 2 seals, 2 volunteers"
    assert result.totals == {"3": Decimal("8.333333"), "5": Decimal(0)}


def test_totals_that_ignore_a_reversal_are_refused():
    records = build(REVERSED, seal_at=(7,))
    records[-1]["volunteers"]["2"] = "9.583333"

    result = verify_records(records, public(PROJECT_KEY))

    assert not result.ok
    assert result.problem == "volunteer 2: stored total 9.583333 but the entries add up to 1.250000"


# --- fuzzing: whatever a line holds, the answer is a Verification, never a traceback ------------

if given is not None:
    JSON = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    FIELDS = ["kind", "seq", "volunteer", "credit", "prev", "hash", "reverses", "head", "signature"]

    @settings(max_examples=300, deadline=None)
    @given(
        index=st.integers(min_value=0, max_value=9),
        name=st.sampled_from(FIELDS),
        value=JSON,
        extra=st.none() | JSON,
    )
    def test_a_changed_field_or_an_extra_line_gives_a_verification(index, name, value, extra):
        records = build(REVERSED, seal_at=(3, 7))
        record = records[index % len(records)]
        signed = record.get("kind") in ("entry", "reversal", "seal")
        changed = signed and name in record and record[name] != value
        record[name] = value
        if extra is not None:
            records.insert(1 + index % len(records), extra)

        result = verify_records(records, public(PROJECT_KEY))

        assert isinstance(result, ledger.Verification)
        if changed or (extra is not None and not isinstance(extra, dict)):
            assert not result.ok and result.problem, "a changed entry or seal, a stray line: refused"

    @settings(max_examples=200, deadline=None)
    @given(index=st.integers(min_value=0, max_value=9), raw=st.binary(max_size=64))
    def test_any_bytes_on_a_line_give_a_verification(tmp_path_factory, index, raw):
        lines = [line.encode() for line in lines_of(build(REVERSED, seal_at=(3, 7)))]
        lines.insert(index % len(lines), raw.replace(b"\n", b" "))
        path = write_lines(tmp_path_factory.mktemp("fuzz") / "ledger.jsonl", lines)

        result = verify_file(path, public(PROJECT_KEY))

        assert isinstance(result, ledger.Verification)
        if raw.strip():
            assert not result.ok and result.problem

else:  # pragma: no cover - the Python 3.9 pass

    def test_a_changed_field_or_an_extra_line_gives_a_verification():
        pytest.skip("hypothesis is not installed")


def test_a_boinc_hosts_grant_is_marked_bearer_in_the_chain_from_v4_on():
    marked = entry(build(), 2)
    records = build()
    entry(records, 2)["trust"] = "bearer"
    reseal(records)

    assert verify_records(records, public(PROJECT_KEY)).ok
    assert entry(records, 2)["hash"] != marked["hash"], "the mark is hashed"
    quietly_dropped = [dict(r) for r in records]
    del entry(quietly_dropped, 2)["trust"]
    assert not verify_records(quietly_dropped, public(PROJECT_KEY)).ok
    other = [dict(r) for r in records]
    entry(other, 2)["trust"] = "trusted"
    reseal(other)
    assert 'trust must be "bearer"' in verify_records(other, public(PROJECT_KEY)).problem
    older = build(header_format="tessera-ledger-v3")
    entry(older, 2)["trust"] = "bearer"
    reseal(older)
    assert "in a tessera-ledger-v4 file" in verify_records(older, public(PROJECT_KEY)).problem
