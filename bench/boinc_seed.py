"""The BOINC benchmark's data beside the dispatch benchmark's: a BOINC key, the app's BOINC
version, and volunteers with account keys.

``seed_boinc`` gives the dispatch fixture's app a twin version for stock BOINC clients
(``runtime`` "boinc", x86-64 Linux) with two ``BoincAppFile`` rows whose bytes are in the
storage and whose signatures are real (made with a fresh BOINC key, which the coordinator
also reads, as production does, from ``BOINC_KEY_FILE``), and one volunteer per simulated
BOINC client, each with an account key kept as its SHA-256, as ``accounts.issue_key`` keeps
it. The clients' hosts are not seeded: each is made by the coordinator on its client's first
request, as for a real client.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.dispatch_seed import Fixture

BOINC_PLATFORM = "x86_64-pc-linux-gnu"
# The columns the seeding SQL below fills in the BOINC tables, checked against the schema.
BOINC_COLUMNS = {
    "boinc_boincaccountkey": {"volunteer_id", "key_hash", "created", "issued_by"},
    "boinc_boincappfile": {
        "app_version_id",
        "name",
        "open_name",
        "main_program",
        "storage_name",
        "size",
        "md5",
        "signature",
    },
}
APP_FILES = (  # name stem, open name, main program, size
    ("tessera_launcher", "tessera_launcher", True, 48 * 1024),
    ("bench_app", "tessera_app", False, 4 * 1024),
)


@dataclass(frozen=True)
class BoincClient:
    """One simulated BOINC client: its index (for its network) and its account key."""

    index: int
    key: str


@dataclass(frozen=True)
class BoincFixture:
    version_id: int
    public_key: str  # the code-signing key the clients have pinned, in BOINC's text
    clients: list[BoincClient]


def write_boinc_key(path: Path) -> str:
    """A new BOINC code-signing key at ``path`` (mode 0600); its public text."""
    from coordinator.boinc import crypt  # no Django: plain cryptography

    key = crypt.generate_private_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(crypt.private_key_pem(key))
    return crypt.public_key_text(key)


def seed_boinc(
    conn: psycopg.Connection, fixture: Fixture, *, clients: int, media_root: Path, key_path: Path
) -> BoincFixture:
    """The BOINC key, the app's BOINC version with its files, and ``clients`` volunteers with keys."""
    from coordinator.boinc import crypt

    public_key = write_boinc_key(key_path)
    signing_key = crypt.load_private_key_pem(key_path.read_bytes())
    with conn.transaction():
        version_id = conn.execute(
            "INSERT INTO work_appversion (app_id, version, platform, runtime, plan_class, bundle,"
            " bundle_sha256, bundle_size, signature, max_output_bytes, created)"
            " SELECT app_id, version, %s, 'boinc', 'cpu', bundle, bundle_sha256, bundle_size, signature,"
            " max_output_bytes, now() FROM work_appversion WHERE id = %s RETURNING id",
            (BOINC_PLATFORM, fixture.app_version_id),
        ).fetchone()[0]
        for stem, open_name, main_program, size in APP_FILES:
            name = f"{stem}_1_{BOINC_PLATFORM}"
            data = os.urandom(size)
            stored = f"boinc/{name}"
            (media_root / "boinc").mkdir(parents=True, exist_ok=True)
            (media_root / stored).write_bytes(data)
            conn.execute(
                "INSERT INTO boinc_boincappfile (app_version_id, name, open_name, main_program,"
                " storage_name, size, md5, signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    version_id,
                    name,
                    open_name,
                    main_program,
                    stored,
                    size,
                    hashlib.md5(data, usedforsecurity=False).hexdigest(),
                    crypt.sign_file_bytes(signing_key, data),
                ),
            )
        made = [_seed_volunteer(conn, index) for index in range(clients)]
    return BoincFixture(version_id=version_id, public_key=public_key, clients=made)


def _seed_volunteer(conn: psycopg.Connection, index: int) -> BoincClient:
    """A volunteer with one live BOINC account key (kept as its SHA-256, as issue_key keeps it)."""
    key = secrets.token_hex(16)
    user_id = conn.execute(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
        " is_staff, is_active, date_joined) VALUES (%s, false, %s, '', '', '', false, true, now())"
        " RETURNING id",
        ("!" + os.urandom(20).hex(), f"bench-boinc-volunteer-{index}"),
    ).fetchone()[0]
    conn.execute("INSERT INTO accounts_volunteer (user_id, created) VALUES (%s, now())", (user_id,))
    conn.execute(
        "INSERT INTO boinc_boincaccountkey (volunteer_id, key_hash, created, revoked, issued_by)"
        " VALUES (%s, %s, now(), NULL, 'bench')",
        (user_id, hashlib.sha256(key.encode()).hexdigest()),
    )
    return BoincClient(index=index, key=key)
