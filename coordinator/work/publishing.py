"""Publishing an app from workunits/: build its bundle, sign it, register the version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db import transaction
from nacl.signing import SigningKey

import workunits
from coordinator.core.errors import Conflict, InvalidInput, NotFound
from coordinator.work.bundles import build_app_bundle
from coordinator.work.comparison import CompareMode
from coordinator.work.models import App, AppVersion
from coordinator.work.services import register_app_version
from workunits.wasm_build import WasmBuildError


@dataclass(frozen=True)
class Published:
    version: AppVersion
    created: bool  # False: this exact bundle was already the registered version


@transaction.atomic
def publish_app(*, name: str, signing_key: SigningKey) -> Published:
    """Register ``MANIFEST.version`` of an app; publishing the same code again changes nothing,
    and changed code under a version already published is refused (bump the version)."""
    try:
        module = workunits.load(name)
    except LookupError as error:
        raise NotFound(str(error), code="unknown_app") from error
    manifest = module.MANIFEST
    try:  # a wasm app compiles here (the first time: about a minute), before any write
        bundle = build_app_bundle(module)
    except (ValueError, WasmBuildError) as error:
        raise InvalidInput(f"{name} does not build: {error}", code="bad_bundle") from error
    app, _ = App.objects.update_or_create(
        name=manifest.name,
        defaults={
            "title": manifest.title,
            "compare_mode": CompareMode(manifest.compare),
            "abs_tolerance": manifest.abs_tolerance,
            "rel_tolerance": manifest.rel_tolerance,
        },
    )
    existing = AppVersion.objects.filter(app=app, version=manifest.version, platform="any").first()
    if existing is not None:
        if existing.bundle_sha256 == hashlib.sha256(bundle).hexdigest():
            return Published(existing, created=False)
        raise Conflict(
            f"{name} version {manifest.version} is already published with other code: "
            "raise MANIFEST.version to publish this code",
            code="version_exists",
        )
    version = register_app_version(
        app=app,
        version=manifest.version,
        bundle=bundle,
        signing_key=signing_key,
        max_output_bytes=manifest.max_output_bytes,
        runtime=manifest.runtime,
    )
    return Published(version, created=True)
