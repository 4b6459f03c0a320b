"""A coordinator on a real socket for the client's tests: the client's own session, signing and
JSON go over the wire, and each request is kept for the test to read."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tessera_client.signing import b64encode

PROJECT_KEY = b64encode(bytes(32))


class FakeCoordinator:
    """The scheduler and registration endpoints: keeps each request's JSON and answers with
    ``reply``; the project's facts for ``tessera attach``, and its ``notices``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.user_agents: list[str] = []
        self.reply: dict = {"acks": [], "tasks": [], "next_rpc_seconds": 60, "host_id": 7}
        self.refusal: tuple[int, dict, dict] | None = None  # status, body, headers instead of a reply
        self.notices: list[dict] = []  # what GET /api/v1/notices answers
        coordinator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                coordinator.requests.append(json.loads(body))
                coordinator.user_agents.append(self.headers.get("User-Agent", ""))
                if coordinator.refusal is not None:
                    status, refused, headers = coordinator.refusal
                    self.answer(True, refused, status, headers)
                    return
                self.answer(self.path in ("/api/v1/scheduler", "/api/v1/hosts"), coordinator.reply)

            def do_GET(self) -> None:
                if self.path.startswith("/api/v1/notices"):
                    self.answer(True, {"notices": coordinator.notices})
                    return
                self.answer(self.path == "/api/v1/project", {"name": "Fake", "code_signing_key": PROJECT_KEY})

            def answer(
                self, found: bool, payload: dict, status: int = 200, headers: dict | None = None
            ) -> None:
                answer = json.dumps(payload).encode()
                self.send_response(status if found else 404)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
