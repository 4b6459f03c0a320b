"""The dashboard's HTTP: who may ask, what they may ask, and the answers' safety headers.

Every request must carry the secret as its first path segment, name the dashboard itself as
its ``Host`` (a web page whose own name resolves to 127.0.0.1, DNS rebinding, is refused) and
not come from another site (``Sec-Fetch-Site``). A request that changes anything must be a
``POST`` of JSON whose ``Origin`` is the dashboard's own: a form or a script on any other page,
even one served from 127.0.0.1 on another port, is refused before it is read. The page's
Content-Security-Policy lets it run only its own script, so a project's words shown on it
(notices, app names) cannot become code, on top of the script putting them in as text.
"""

from __future__ import annotations

import hmac
import json
import socket
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import requests

from tessera_client.dashboard_server import DashboardServer, LoopBusy
from tessera_client.prefs import PreferenceError
from tessera_client.protocol import ProtocolError
from tessera_client.state import StateError

ASSETS = Path(__file__).with_name("dashboard")
PAGES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
MAX_BODY = 64 * 1024
SAFETY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Refused(Exception):
    """The request is answered with ``status`` and ``message``, and nothing changes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def answer(connection: socket.socket, server: DashboardServer) -> None:
    """Read one request from ``connection`` and answer it (HTTP/1.0: then the connection ends)."""
    DashboardHandler(connection, ("127.0.0.1", 0), server)  # type: ignore[arg-type]


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer  # type: ignore[assignment]  # ours, not a socketserver
    server_version = "tessera-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the address holds the secret."""

    def do_GET(self) -> None:
        self._answer_with(self._get)

    def do_POST(self) -> None:
        self._answer_with(self._post)

    def _answer_with(self, route: Any) -> None:
        try:
            route(self._checked_path())
        except Refused as refusal:
            self._send_json(refusal.status, {"error": str(refusal)})
        except (StateError, PreferenceError, ValueError) as error:
            self._send_json(400, {"error": str(error)})
        except ProtocolError as error:
            self._send_json(
                502, {"error": f"the project refused: {error.detail} ({error.status} {error.code})"}
            )
        except requests.RequestException as error:
            self._send_json(502, {"error": f"cannot reach the project: {error}"})
        except LoopBusy as busy:
            self._send_json(503, {"error": str(busy)})
        except Exception as error:  # a bug of ours: say so, and the client goes on
            self._send_json(500, {"error": f"the client could not do it: {type(error).__name__}: {error}"})

    # -- who may ask ----------------------------------------------------------------------
    def _checked_path(self) -> str:
        """The path after the secret, once the request has shown it may be answered at all."""
        _, _, rest = self.path.partition("/")
        secret, _, inner = rest.partition("/")
        if not hmac.compare_digest(secret.encode(), self.server.secret.encode()):
            raise Refused(403, "this dashboard answers only at the address `tessera dashboard` gives")
        own = {f"127.0.0.1:{self.server.port}", f"localhost:{self.server.port}"}
        if self.headers.get("Host", "") not in own:
            raise Refused(403, "the dashboard answers only requests addressed to itself")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise Refused(403, "the dashboard answers no other site")
        return inner.split("?", 1)[0]

    def _read_json(self) -> dict[str, Any]:
        """A POST's JSON object, from the dashboard's own page only."""
        if self.headers.get("Origin") != f"http://{self.headers.get('Host')}":
            raise Refused(403, "changes are taken only from the dashboard's own page")
        if self.headers.get_content_type() != "application/json":
            raise Refused(415, "send JSON (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refused(411, "say the body's length (Content-Length)") from None
        if not 0 <= length <= MAX_BODY:
            raise Refused(413, f"a request's body is at most {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        return body

    # -- what they may ask ----------------------------------------------------------------
    def _get(self, path: str) -> None:
        if path == "" and not self.path.split("?", 1)[0].endswith("/"):
            self.send_response(301)  # the page's relative addresses need the secret's folder
            self.send_header("Location", f"/{self.server.secret}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "api/state":
            self._send_json(200, self.server.on_loop(self.server.backend.state))
        elif path in PAGES:
            name, content_type = PAGES[path]
            self._send(200, (ASSETS / name).read_bytes(), content_type)
        else:
            raise Refused(404, "no such page")

    def _post(self, path: str) -> None:
        action = path[len("api/") :] if path.startswith("api/") else ""
        if action not in self.server.backend.ACTIONS:
            raise Refused(404, "no such action")
        body = self._read_json()
        backend = self.server.backend
        if action == "attach":  # talks to the project: off the daemon's loop, which it would hold up
            reply = backend.attach(body)
        else:
            reply = self.server.on_loop(lambda: backend.act(action, body))
        self._send_json(200, reply)

    # -- answers --------------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SAFETY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
