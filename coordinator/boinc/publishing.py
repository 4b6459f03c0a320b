"""App versions for stock BOINC clients (docs/boinc.md, "Apps").

A BOINC client runs what the reply names as the main program, so each native version of an
app on a platform our launcher builds for gets a BOINC twin (``AppVersion.runtime`` "boinc"):
two files, our launcher (``coordinator/boinc/launcher``, the main program, which speaks
BOINC's app API) and the app's own executable, each kept in the storage and signed with the
BOINC key (``crypt.sign_file_bytes``), as the client requires of every app file. ``publish_app``
makes them whenever the project has a BOINC key; ``resign_all`` signs every file again after
the key is rotated.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from nacl.signing import SigningKey

from coordinator.boinc import crypt, keys, launcher
from coordinator.boinc.models import BoincAppFile
from coordinator.work.bundles import zip_files
from coordinator.work.models import App, AppVersion
from coordinator.work.services import register_app_version

LAUNCHER_OPEN_NAME = "tessera_launcher"
APP_OPEN_NAME = "tessera_app"  # the name the launcher runs (its default)


def _executable(native: AppVersion) -> bytes:
    """The executable inside a native version's bundle, as its manifest names it."""
    with native.bundle.open("rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as bundle:
        manifest = json.loads(bundle.read("tessera-app.json"))
        return bundle.read(manifest["entrypoint"])


def _launcher(platform: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tessera-launcher-") as folder:
        return launcher.build(platform, Path(folder) / LAUNCHER_OPEN_NAME).read_bytes()


def publish_for_boinc(*, app: App, version: int, signing_key: SigningKey) -> list[AppVersion]:
    """The BOINC twins of ``app``'s native cpu versions numbered ``version`` that have none
    yet; none at all when the project has no BOINC key (``keys.create_key``)."""
    try:
        boinc_key = keys.load_key()
    except keys.BoincKeyMissing:
        return []
    natives = AppVersion.objects.filter(
        app=app, version=version, runtime="native", plan_class="cpu", platform__in=launcher.LAUNCHER_TARGETS
    )
    made = []
    for native in natives:
        if AppVersion.objects.filter(
            app=app, version=version, platform=native.platform, runtime="boinc"
        ).exists():
            continue
        stem = f"{app.name}_{version}_{native.platform}"
        files = [
            (f"tessera_launcher_{stem}", LAUNCHER_OPEN_NAME, True, _launcher(native.platform)),
            (stem, APP_OPEN_NAME, False, _executable(native)),
        ]
        made.append(_register(native, files, signing_key=signing_key, boinc_key=boinc_key))
    return made


def twins_of_published(
    sender: object, *, app: App, version: int, signing_key: SigningKey, **_: object
) -> list:
    """The ``work.signals.app_published`` receiver: the BOINC twins made for this publish."""
    return publish_for_boinc(app=app, version=version, signing_key=signing_key)


@transaction.atomic
def _register(
    native: AppVersion,
    files: list[tuple[str, str, bool, bytes]],
    *,
    signing_key: SigningKey,
    boinc_key: rsa.RSAPrivateKey,
) -> AppVersion:
    twin = register_app_version(
        app=native.app,
        version=native.version,
        bundle=zip_files({name: data for name, _, _, data in files}),
        signing_key=signing_key,
        max_output_bytes=native.max_output_bytes,
        platform=native.platform,
        runtime="boinc",
    )
    for name, open_name, main_program, data in files:
        stored = f"boinc/{name}"
        default_storage.delete(stored)
        BoincAppFile.objects.create(
            app_version=twin,
            name=name,
            open_name=open_name,
            main_program=main_program,
            storage_name=default_storage.save(stored, ContentFile(data)),
            size=len(data),
            md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            signature=crypt.sign_file_bytes(boinc_key, data),
        )
    return twin


def resign_all(boinc_key: rsa.RSAPrivateKey) -> int:
    """Sign every BOINC app file again with ``boinc_key`` (after a rotation); returns how many."""
    count = 0
    for row in BoincAppFile.objects.all():
        with default_storage.open(row.storage_name, "rb") as handle:
            data = handle.read()
        BoincAppFile.objects.filter(pk=row.pk).update(signature=crypt.sign_file_bytes(boinc_key, data))
        count += 1
    return count
