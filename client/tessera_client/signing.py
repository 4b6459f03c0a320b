"""The request-signing scheme shared by hosts and the coordinator.

A host signs ``tessera-ed25519-v1``, the method, the path with its query string, the
timestamp, a random nonce and the SHA-256 of the body, one per line. The coordinator
recomputes the same message, so this module is the single definition of the wire format.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

SCHEME = "tessera-ed25519-v1"
HEADER_HOST = "X-Tessera-Host"
HEADER_TIMESTAMP = "X-Tessera-Timestamp"
HEADER_NONCE = "X-Tessera-Nonce"
HEADER_SIGNATURE = "X-Tessera-Signature"
NONCE_BYTES = 16


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Canonical base64 only: anything else raises ``ValueError``.

    ``base64.b64decode(validate=True)`` ignores the spare bits before ``=``, so one key
    would have several spellings; re-encoding and comparing refuses all but one.
    """
    try:
        decoded = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, ValueError) as error:
        raise ValueError("not valid base64") from error
    if b64encode(decoded) != text:
        raise ValueError("not canonical base64")
    return decoded


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signing_message(*, method: str, path: str, timestamp: int, nonce: str, body_sha256: str) -> bytes:
    """The exact bytes a host signs for one request."""
    parts = [SCHEME, method.upper(), path, str(int(timestamp)), nonce, body_sha256]
    return "\n".join(parts).encode("utf-8")


def sign_request(
    key: SigningKey,
    *,
    method: str,
    path: str,
    body: bytes,
    host_id: int | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request; ``host_id`` is omitted only to register."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = secrets.token_hex(NONCE_BYTES) if nonce is None else nonce
    message = signing_message(
        method=method, path=path, timestamp=timestamp, nonce=nonce, body_sha256=body_digest(body)
    )
    headers = {
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: b64encode(key.sign(message).signature),
    }
    if host_id is not None:
        headers[HEADER_HOST] = str(host_id)
    return headers


def signature_is_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


BUNDLE_SCHEME = "tessera-bundle-v1"


def bundle_message(*, app: str, version: int, platform: str, sha256: str) -> bytes:
    """What the project signs for an app version: its identity bound to the bundle's hash.

    Signing the name, version and platform with the hash means a bundle signed for one app
    version cannot be served as another (an old, buggy version as the new one, say).
    """
    return "\n".join([BUNDLE_SCHEME, app, str(int(version)), platform, sha256]).encode("utf-8")


def key_fingerprint(public_key: bytes) -> str:
    """SHA-256 of the raw public key, in groups of four: short enough to read aloud and compare."""
    digest = hashlib.sha256(public_key).hexdigest()
    return "SHA256:" + ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))
