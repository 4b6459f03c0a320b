"""How every benchmark reports: a readable table, then one line of JSON, last.

The JSON line is the contract (scripts and docs/benchmarks.md read it), so it is always
the last thing printed, compact and flushed; the table before it is for people.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Table:
    """Columns of fixed widths, each cell right-aligned, two spaces between them."""

    columns: tuple[tuple[str, int], ...]

    def header(self) -> str:
        """The column names, aligned as the rows' cells."""
        return "  ".join(name.rjust(width) for name, width in self.columns)

    def row(self, cells: Sequence[str]) -> str:
        """One line of cells, one per column."""
        return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, self.columns, strict=True))


def print_pairs(rows: Iterable[tuple[str, str]], width: int) -> None:
    """A two-column table: each label padded to ``width``, then its value."""
    for label, value in rows:
        print(f"{label:<{width}}{value}")


def print_json_line(figures: dict[str, Any]) -> None:
    """The figures as one compact line of JSON: the last thing a benchmark prints."""
    print(json.dumps(figures, separators=(",", ":")), flush=True)
