"""The project's Ed25519 signing key, kept in a file outside the database.

It seals the credit ledger (and will sign app versions). The file, named by the
``PROJECT_KEY_FILE`` setting, holds the key's 32-byte seed in base64 on one line, readable by
its owner only. A database dump or a stolen backup therefore never carries the key.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from django.conf import settings
from nacl.signing import SigningKey
from tessera_client.signing import b64decode, b64encode, key_fingerprint

logger = logging.getLogger(__name__)


class ProjectKeyError(Exception):
    """The project's key file cannot be used."""


class ProjectKeyMissing(ProjectKeyError):
    """There is no key file where ``PROJECT_KEY_FILE`` points."""


class ProjectKeyExists(ProjectKeyError):
    """A key file is already there and overwriting was not asked for."""


def project_key_path() -> Path:
    return Path(os.fspath(settings.PROJECT_KEY_FILE))


def project_key_exists() -> bool:
    return project_key_path().is_file()


def load_project_key(path: Path | None = None) -> SigningKey:
    """Read the signing key; a clear error if it is missing or is not one."""
    path = project_key_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError as error:
        raise ProjectKeyMissing(
            f"the project's signing key file {path} does not exist: create it with "
            "`manage.py keys create`, or point PROJECT_KEY_FILE at the existing one"
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise ProjectKeyError(f"cannot read the project's signing key file {path}: {error}") from error
    try:
        seed = b64decode(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ProjectKeyError(f"{path} does not hold a base64 Ed25519 key (32 bytes)")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("the project's signing key file %s is readable by others: chmod 600 it", path)
    return SigningKey(seed)


def public_key_b64(key: SigningKey) -> str:
    return b64encode(bytes(key.verify_key))


def project_public_key_b64(path: Path | None = None) -> str:
    """The public half, as exports and clients carry it: from ``PROJECT_PUBLIC_KEY`` when set
    (web processes need not hold the private key), else derived from the key file."""
    if path is None and settings.PROJECT_PUBLIC_KEY:
        return settings.PROJECT_PUBLIC_KEY
    return public_key_b64(load_project_key(path))


def fingerprint(public_key_b64_text: str) -> str:
    """The fingerprint the client shows when it pins this key (one definition, in the client)."""
    return key_fingerprint(b64decode(public_key_b64_text))


def create_project_key(path: Path, overwrite: bool = False) -> SigningKey:
    """Make a new key and write it to ``path`` (mode 0600) in one step.

    The key is written to a temporary file beside ``path`` and then linked into place
    (refusing an existing file, even one that appears meanwhile) or, with ``overwrite``,
    renamed over it. A reader never sees half a key.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ProjectKeyExists(f"{path} already exists; refusing to overwrite the project's key")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(b64encode(bytes(key)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError as error:
                raise ProjectKeyExists(
                    f"{path} already exists; refusing to overwrite the project's key"
                ) from error
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return key


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
