"""docs/security.md keeps its word: every claim about an attacker and every residual risk names
a test as `path::test_name`, every test it names exists, and every test written for it is named.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
CITATION = re.compile(r"`([\w./-]+\.py)::(\w+)`")
ITEM = re.compile(r"^(?:-|\d+\.) ")
ATTACKERS = 7
SECURITY_TESTS = ("coordinator/core/tests/test_security.py", "client/tests/test_security_client.py")


def sections(text: str, level: str) -> dict[str, str]:
    """The body under each heading of ``level`` ("## " or "### "), by title."""
    parts = re.split(rf"^{level}(.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def items(body: str) -> list[str]:
    """List items ("- " or "1. ") with their indented continuation lines."""
    found: list[str] = []
    inside = False
    for line in body.splitlines():
        if ITEM.match(line):
            found.append(line)
            inside = True
        elif inside and line.startswith(" ") and line.strip():
            found[-1] += " " + line.strip()
        else:
            inside = False
    return found


@cache
def defined_tests(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    )


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_cited_test_exists():
    citations = CITATION.findall(doc())
    assert len(citations) > 50

    missing = [
        f"{path}::{name}"
        for path, name in citations
        if not (ROOT / path).is_file() or name not in defined_tests(path)
    ]

    assert missing == []


def test_every_claim_about_an_attacker_cites_a_test():
    attackers = sections(sections(doc(), "## ")["Attackers"], "### ")
    assert len(attackers) == ATTACKERS, list(attackers)

    for attacker, body in attackers.items():
        lines = body.splitlines()
        assert any(line.startswith("**Can:**") for line in lines), attacker
        assert any(line.startswith("**Cannot") for line in lines), attacker
        claims = items(body)
        assert claims, attacker
        uncited = [claim for claim in claims if not CITATION.search(claim)]
        assert uncited == [], attacker


def test_every_residual_risk_cites_a_test():
    risks = items(sections(doc(), "## ")["Residual risks"])

    assert risks
    assert [risk for risk in risks if not CITATION.search(risk)] == []


def test_every_security_test_is_cited():
    cited = set(CITATION.findall(doc()))

    for path in SECURITY_TESTS:
        assert defined_tests(path), path
        assert {name for name in defined_tests(path) if (path, name) not in cited} == set(), path
