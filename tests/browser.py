"""The browser the page tests drive: Debian's Chromium under Playwright, headless, with every
address but 127.0.0.1 unreachable. Its fixtures (``chromium``, ``page``, ``shot``) are in
tests/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "a long enough passphrase 42"
CHAIN = Path(__file__).resolve().parent.parent / "coordinator" / "work" / "demo_app"
# No DNS but for the loopback, no Google services, no updates: the browser talks only to us.
OFFLINE = [
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing: apt-get install chromium (make test does it as root)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (requirements-dev.txt)"
    return None


def require_browser(who: str) -> None:
    """Skip ``who`` loudly without a browser, or fail it in CI, where one is installed."""
    missing = browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{who} need a browser: {missing}")
        pytest.skip(f"{who} need a browser: {missing}")
