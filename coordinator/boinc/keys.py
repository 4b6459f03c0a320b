"""The project's BOINC code-signing key: RSA-1024, apart from our Ed25519 key (docs/boinc.md).

Stock BOINC clients accept nothing else: they pin the first ``<code_sign_key>`` a project sends
and then take a new one only with a ``<code_sign_key_signature>`` made by the key they have.
The private key lives in ``BOINC_KEY_FILE`` (PKCS#8 PEM, mode 0600); each rotation leaves, in
``<BOINC_KEY_FILE>.rotations.json``, the old public key, the new one and the old key's
signature of the new, so a client that pinned any earlier key is walked along the chain, one
step per scheduler reply.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from coordinator.boinc import crypt


class BoincKeyMissing(crypt.BoincKeyError):
    """No BOINC key file where ``BOINC_KEY_FILE`` points."""


# The public text of the key file last read, by the SHA-256 of the file's bytes: loading the
# RSA key takes milliseconds and every scheduler reply needs the text; a rotation changes the
# bytes, so the text is never stale.
_public_texts: dict[bytes, str] = {}


def key_path() -> Path:
    return Path(os.fspath(settings.BOINC_KEY_FILE))


def rotations_path() -> Path:
    return key_path().with_name(key_path().name + ".rotations.json")


def load_key(path: Path | None = None) -> rsa.RSAPrivateKey:
    path = key_path() if path is None else path
    try:
        return crypt.load_private_key_pem(path.read_bytes())
    except FileNotFoundError as error:
        raise BoincKeyMissing(
            f"the BOINC code-signing key {path} does not exist: `manage.py keys create --boinc` makes it"
        ) from error


def _write_private(path: Path, key: rsa.RSAPrivateKey, *, overwrite: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(crypt.private_key_pem(key))
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # FileExistsError rather than replacing a key
    finally:
        temporary.unlink(missing_ok=True)


def create_key() -> rsa.RSAPrivateKey:
    """A new BOINC key in BOINC_KEY_FILE; refuses to replace one (rotate instead)."""
    path = key_path()
    if path.exists():
        raise crypt.BoincKeyError(f"{path} already exists: rotate it with `manage.py keys rotate --boinc`")
    key = crypt.generate_private_key()
    _write_private(path, key, overwrite=False)
    return key


def rotate_key() -> rsa.RSAPrivateKey:
    """Replace the key, recording the old key's signature of the new one for the clients that
    pinned the old. The caller signs the app files again (``publishing.resign_all``)."""
    old = load_key()
    new = crypt.generate_private_key()
    chain = _rotations()
    chain.append(
        {
            "old": crypt.public_key_text(old),
            "new": crypt.public_key_text(new),
            "signature": crypt.key_rotation_signature(old, new),
        }
    )
    record = rotations_path()
    record.write_text(json.dumps(chain, indent=1) + "\n", encoding="ascii")
    _write_private(key_path(), new, overwrite=True)
    return new


def _rotations() -> list[dict[str, str]]:
    try:
        return list(json.loads(rotations_path().read_text(encoding="ascii")))
    except FileNotFoundError:
        return []


def public_text() -> str:
    """The current public key in BOINC's text form; "" when the project has none."""
    if settings.BOINC_PUBLIC_KEY:
        return settings.BOINC_PUBLIC_KEY
    try:
        data = key_path().read_bytes()
    except FileNotFoundError:
        return ""
    digest = hashlib.sha256(data).digest()
    text = _public_texts.get(digest)
    if text is None:
        text = crypt.public_key_text(crypt.load_private_key_pem(data))
        _public_texts.clear()
        _public_texts[digest] = text
    return text


def key_for_client(client_key: str) -> tuple[str, str]:
    """What a reply tells a client that has pinned ``client_key`` (BOINC's
    handle_request.cpp): the key when it has none; the next key of the rotation chain with its
    signature when it has an older one; nothing when it has the current one (sending it every
    time makes the client log "Missing code sign key signature")."""
    current = public_text()
    if not current or _same(client_key, current):
        return "", ""
    if not client_key.strip():
        return current, ""
    for step in _rotations():
        if _same(step["old"], client_key):
            return step["new"], step["signature"]
    return "", ""  # a key we never had: the client keeps it, and our files fail its check


def _same(one: str, other: str) -> bool:
    return one.split() == other.split()
