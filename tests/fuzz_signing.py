"""What the API fuzz test (tests/test_api_fuzz.py) needs besides schemathesis: the seeded
objects it sends, and a WSGI layer that signs host requests as a real client would."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core import signals
from django.core.handlers.wsgi import WSGIRequest
from django.db import close_old_connections
from tessera_client.protocol import HostKey
from tessera_client.signing import HEADER_SIGNATURE, sign_request

SIGN_ME = "sign-me"  # the signature header's value in a request the layer must sign
SIGNATURE_ENVIRON = "HTTP_" + HEADER_SIGNATURE.upper().replace("-", "_")


class Seeds:
    """The credentials and real object ids of the current test, read while examples are drawn."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.account_token = self.scientist_token = ""
        self.username = self.password = ""
        self.host_id = 0
        self.host_key: HostKey | None = None
        self.new_key = HostKey.generate()  # the key a registration proves it holds
        self.ids: dict[str, list[int]] = {}
        self.download_tokens: list[str] = []
        self.upload_fields: dict[str, str] = {}

    def fill(self, *, host: Any, **values: Any) -> None:
        self.host_id = host.pk
        for name, value in values.items():
            if not hasattr(self, name):
                raise AttributeError(f"Seeds has no {name}")
            setattr(self, name, value)

    @property
    def new_public_key(self) -> str:
        return self.new_key.public_key_b64

    def key_for(self, host_id: str | None) -> HostKey | None:
        if host_id is None:
            return self.new_key
        return self.host_key if host_id == str(self.host_id) else None


class SigningApp:
    """Signs a request whose signature header says ``SIGN_ME``, over the path and body exactly
    as the coordinator will read them, with a fresh timestamp and nonce (what the client's
    ``sign_request`` does). A request that names the seeded host signs as that host; one that
    names none (a registration) signs with the seeds' new key; one that names another host
    goes unsigned."""

    def __init__(self, application: Callable, seeds: Seeds) -> None:
        self.application = application
        self.seeds = seeds

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get(SIGNATURE_ENVIRON) == SIGN_ME:
            self._sign(environ)
        answer = self.application(environ, start_response)
        try:
            body = b"".join(answer)  # read it all, then close it, as a WSGI server does
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        return [body]

    def _sign(self, environ: dict[str, Any]) -> None:
        length = environ.get("CONTENT_LENGTH") or "0"
        body = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
        environ["wsgi.input"] = io.BytesIO(body)
        key = self.seeds.key_for(environ.get("HTTP_X_TESSERA_HOST"))
        if key is None:
            del environ[SIGNATURE_ENVIRON]
            return
        # A copy: WSGIRequest rewrites PATH_INFO in the environ it is given (decoded from
        # latin-1), which the coordinator would then fail to decode a second time.
        path = WSGIRequest(dict(environ)).get_full_path()
        signed = sign_request(key.signing_key, method=environ["REQUEST_METHOD"], path=path, body=body)
        for name, value in signed.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value


@contextmanager
def kept_connection() -> Iterator[None]:
    """Keep the test's database connection across requests, as Django's test client does:
    a WSGI request would otherwise close it mid-transaction when it starts and ends."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
