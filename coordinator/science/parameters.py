"""A batch's parameters from what a scientist uploads: a JSON object, or a CSV table.

Every refusal names where the problem is (a line and column of the JSON, a line and field
of the CSV), so the scientist can fix the file without guessing. Nothing here touches the
database; the splitter's own checks run afterwards (``services.count_units``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from coordinator.core.errors import InvalidInput, PayloadTooLarge


def parameter_file_limit() -> int:
    return settings.BATCH_PARAMETER_FILE_MAX_BYTES


@dataclass(frozen=True)
class Parameters:
    """What the splitter gets, and for a CSV upload the file line of each table row."""

    values: dict[str, Any]
    table_lines: list[int] = field(default_factory=list)


def read_parameter_file(manifest: Any, filename: str, data: bytes, base: dict[str, Any]) -> Parameters:
    """The parameters a file holds: a ``.json`` file is the whole object; a ``.csv`` file is
    the app's table, added to ``base`` (the other parameters) under its table parameter."""
    limit = parameter_file_limit()
    if len(data) > limit:
        raise PayloadTooLarge(f"the parameter file is {len(data):,} bytes; at most {limit:,}")
    if not data.strip():
        raise InvalidInput(f"the parameter file {filename!r} is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the parameter file is not UTF-8 text (byte {error.start})") from error
    kind = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if kind == "json":
        return Parameters(parse_json_parameters(text))
    if kind == "csv":
        rows, lines = parse_table(manifest, text)
        return Parameters({**base, manifest.table_parameter: rows}, lines)
    raise InvalidInput(f"the parameter file must end in .json or .csv, not {filename!r}")


def parse_json_parameters(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"line {error.lineno}, column {error.colno}: {error.msg}") from error
    except ValueError as error:
        raise InvalidInput(str(error)) from error
    if not isinstance(value, dict):
        raise InvalidInput("the parameters must be a JSON object ({...})")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_table(manifest: Any, text: str) -> tuple[list[dict[str, float]], list[int]]:
    """Rows of numbers under exactly the app's columns (in any order), and each row's line."""
    if not manifest.table_columns:
        raise InvalidInput(f"{manifest.name} takes no CSV table: upload its parameters as a .json file")
    rows = csv.reader(io.StringIO(text, newline=""))
    expected = list(manifest.table_columns)
    try:
        header = [name.strip() for name in next(rows)]
    except csv.Error as error:
        raise InvalidInput(f"line 1: {error}") from error
    if sorted(header) != sorted(expected):
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        said = (
            "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(repr(c) for c in extra)}" if extra else "",
                )
                if part
            )
            or "a column is repeated"
        )
        raise InvalidInput(f"line 1: the columns must be {', '.join(expected)} ({said})")
    table: list[dict[str, float]] = []
    lines: list[int] = []
    try:
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines are allowed anywhere
            if len(row) != len(header):
                raise InvalidInput(f"line {line}: {len(row)} fields, the header has {len(header)}")
            table.append({name: _number(cell, line, name) for name, cell in zip(header, row, strict=True)})
            lines.append(line)
    except csv.Error as error:
        raise InvalidInput(f"line {rows.line_num}: {error}") from error
    if not table:
        raise InvalidInput("the CSV file has a header but no rows")
    return table, lines


def _number(cell: str, line: int, column: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise InvalidInput(f"line {line}, {column}: {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidInput(f"line {line}, {column}: {cell.strip()!r} is not a finite number")
    return value


_ROW_REFERENCE = re.compile(r"\b(?P<parameter>\w+)\[(?P<index>\d+)\](?:\.(?P<field>\w+))?")


def locate_in_table(message: str, manifest: Any, lines: list[int]) -> str:
    """Say ``line 7, gamma`` where the splitter said ``points[5].gamma``: the scientist
    uploaded a CSV and thinks in its lines."""

    def to_line(match: re.Match[str]) -> str:
        index = int(match["index"])
        if match["parameter"] != manifest.table_parameter or index >= len(lines):
            return match[0]
        place = f"line {lines[index]}"
        return f"{place}, {match['field']}" if match["field"] else place

    return _ROW_REFERENCE.sub(to_line, message)
