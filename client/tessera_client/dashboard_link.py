"""``tessera dashboard``: find the running client's dashboard and open it in the browser.

The running client writes its dashboard's address, secret included, to a file only its
owner can read (:attr:`DataDir.dashboard_file`); this command reads it and checks that a
client still answers there before opening it, so a client that crashed is told as such.
"""

from __future__ import annotations

import json
import webbrowser

import requests

from tessera_client.state import DataDir, StateError

NOT_RUNNING = (
    "the client is not running here, and the dashboard is its page: start it with `tessera run`"
    " (or `tessera service install`), then run `tessera dashboard` again"
)


def address(data: DataDir) -> str:
    """The running client's dashboard address, once it has answered; StateError otherwise."""
    try:
        url = json.loads(data.dashboard_file.read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        raise StateError(NOT_RUNNING) from None
    if not isinstance(url, str) or not url.startswith("http://127.0.0.1:"):
        raise StateError(f"{data.dashboard_file} is damaged; restart `tessera run`")
    with requests.Session() as session:
        session.trust_env = False  # no proxy: the dashboard is on this computer
        try:
            answered = session.get(url, timeout=5).ok
        except requests.RequestException:
            answered = False
    if not answered:
        raise StateError(NOT_RUNNING)
    return url


def open_in_browser(url: str) -> bool:
    """Open ``url`` in the volunteer's browser; False when there is none to open."""
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False
