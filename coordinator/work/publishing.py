"""Publishing an app from workunits/: build its bundle, sign it, register the version.

An app with pinned wheels gets one version per platform its manifest lists, each bundle
holding that platform's wheels, fetched and checked against their pins before anything is
written (``work.wheels``); an app without wheels gets one version for every platform ("any"),
and a wasm app one more native version for each of its ``native_platforms`` (docs/platforms.md).
Apps above are told (``signals.app_published``): with a BOINC key, the boinc app makes each
native version's BOINC twin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import cast

from django.db import transaction
from nacl.signing import SigningKey

import workunits
from coordinator.core.errors import Conflict, InvalidInput, NotFound
from coordinator.work import wheels
from coordinator.work.bundles import build_app_bundle, build_native_bundle
from coordinator.work.comparison import CompareMode
from coordinator.work.models import App, AppVersion
from coordinator.work.services import register_app_version
from coordinator.work.signals import app_published
from workunits.wasm_build import WasmBuildError


@dataclass(frozen=True)
class Published:
    version: AppVersion  # the first platform's: the only one of an app without wheels
    created: bool  # False: this exact bundle was already the registered version
    # Every platform's version with its own ``created``; an app without wheels has one, "any".
    versions: tuple[tuple[AppVersion, bool], ...] = ()


Target = tuple[str, str]  # (platform, runtime) of one app version


def _bundles(module: ModuleType, *, find_links: Path | None, wheel_cache: Path | None) -> dict[Target, bytes]:
    """The bundle for each platform and runtime the app is published for; a wasm app compiles
    here (the first time: about a minute), its native versions too, and wheels are fetched, all
    before any write."""
    manifest = module.MANIFEST
    name = manifest.name
    if not manifest.wheels:
        try:
            bundles = {("any", manifest.runtime): build_app_bundle(module)}
            for platform in manifest.native_platforms:
                bundles[(platform, "native")] = build_native_bundle(module, platform)
            return bundles
        except (ValueError, WasmBuildError) as error:
            raise InvalidInput(f"{name} does not build: {error}", code="bad_bundle") from error
    bundles = {}
    for platform, pinned in sorted(manifest.wheels.items()):
        try:
            found = wheels.fetch_wheels(pinned, cache=wheel_cache or wheels.CACHE, find_links=find_links)
        except wheels.WheelError as error:
            raise InvalidInput(f"{name} ({platform}): {error}", code="bad_wheel") from error
        bundles[(platform, manifest.runtime)] = build_app_bundle(
            module, found, python=manifest.python_for(platform)
        )
    return bundles


def publish_app(
    *, name: str, signing_key: SigningKey, find_links: Path | None = None, wheel_cache: Path | None = None
) -> Published:
    """Register ``MANIFEST.version`` of an app; publishing the same code again changes nothing,
    and changed code under a version already published is refused (bump the version).

    ``find_links``: a folder holding the app's pinned wheels, to publish without the package
    index; a wheel whose SHA-256 differs from its pin refuses the whole publish. ``wheel_cache``:
    where fetched wheels are kept (``var/wheels/`` unless given).
    """
    try:
        module = workunits.load(name)
    except LookupError as error:
        raise NotFound(str(error), code="unknown_app") from error
    bundles = _bundles(module, find_links=find_links, wheel_cache=wheel_cache)
    published = _register(module, bundles, signing_key=signing_key)
    replies = app_published.send(
        sender=publish_app,
        app=published.version.app,
        version=module.MANIFEST.version,
        signing_key=signing_key,
    )
    twins: list[AppVersion] = []
    for _, made in replies:  # each receiver's further versions
        twins.extend(cast("list[AppVersion]", made) or [])
    if not twins:
        return published
    return Published(
        published.version, True, versions=(*published.versions, *((twin, True) for twin in twins))
    )


@transaction.atomic
def _register(module: ModuleType, bundles: dict[Target, bytes], *, signing_key: SigningKey) -> Published:
    """Every platform's version in one transaction: all of them, or (on a conflict) none."""
    manifest = module.MANIFEST
    name = manifest.name
    app, _ = App.objects.update_or_create(
        name=manifest.name,
        defaults={
            "title": manifest.title,
            "compare_mode": CompareMode(manifest.compare),
            "abs_tolerance": manifest.abs_tolerance,
            "rel_tolerance": manifest.rel_tolerance,
        },
    )
    mine = AppVersion.objects.filter(app=app, version=manifest.version).exclude(runtime="boinc")  # not twins
    published = set(mine.values_list("platform", "runtime"))
    elsewhere = sorted(f"{platform} ({runtime})" for platform, runtime in published - set(bundles))
    if elsewhere:  # "any" before the app had wheels, or a platform it no longer lists
        raise Conflict(
            f"{name} version {manifest.version} is already published for {', '.join(elsewhere)}: "
            "raise MANIFEST.version to publish it for other platforms",
            code="version_exists",
        )
    versions: list[tuple[AppVersion, bool]] = []
    for (platform, runtime), bundle in bundles.items():
        existing = AppVersion.objects.filter(
            app=app, version=manifest.version, platform=platform, runtime=runtime
        ).first()
        if existing is not None:
            if existing.bundle_sha256 != hashlib.sha256(bundle).hexdigest():
                where = "" if platform == "any" else f" for {platform}"
                raise Conflict(
                    f"{name} version {manifest.version} is already published{where} with other code: "
                    "raise MANIFEST.version to publish this code",
                    code="version_exists",
                )
            versions.append((existing, False))
            continue
        version = register_app_version(
            app=app,
            version=manifest.version,
            bundle=bundle,
            signing_key=signing_key,
            max_output_bytes=manifest.max_output_bytes,
            platform=platform,
            runtime=runtime,
            python=manifest.python_for(platform),  # the scheduler sends it to hosts of that Python only
        )
        versions.append((version, True))
    return Published(versions[0][0], created=any(new for _, new in versions), versions=tuple(versions))
