"""Signed apps only: verify a downloaded bundle against the pinned project key, then unpack it.

The order is the defence. Size, SHA-256 and the Ed25519 signature (by the key pinned when the
volunteer attached, over the app's name, version, platform and hash) are checked before a
single byte of the archive is parsed for unpacking, so a coordinator that was taken over can
send nothing the project did not sign. Even a signed archive is unpacked as if hostile: no
path may leave the app's folder, no links, a bounded number of entries and of bytes actually
decompressed (a header can lie), and the manifest (:mod:`tessera_client.app_manifest`) must
name a Python file, a WebAssembly module or a native executable inside it.

An app is unpacked into a temporary folder beside the cache and renamed to ``<root>/<sha256>/``
only once it is complete and on disk, so a crash never leaves a half-unpacked app that looks
installed. Its files are made read-only so that no task can change the app for later ones; a
native app's entrypoint is also made executable (zip archives do not keep that bit reliably, so
the one from the archive is ignored); a wasm app's compiled module is cached beside it, in
``<root>/<sha256>.compiled/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

from tessera_client.app_manifest import MANIFEST, AppManifest, check_relative_path, parse_manifest
from tessera_client.files import remove_tree, sync_directory
from tessera_client.signing import b64decode, bundle_message, signature_is_valid
from tessera_client.wheels import WheelRefused, install_wheels

MANIFEST_MAX_BYTES = 64 * 1024
CHUNK = 64 * 1024
UNPACK_PREFIX = ".unpack-"
TRASH_PREFIX = ".trash-"
STALE_SECONDS = 3600.0  # an unpack folder this old belongs to no install still at work
FILE_MODE, DIR_MODE, EXECUTABLE_MODE = 0o444, 0o555, 0o555

# What zipfile raises on a damaged archive (found by fuzzing: a bad offset is a ValueError).
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    ValueError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    OverflowError,
    struct.error,
    zlib.error,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMPILED = re.compile(r"^([0-9a-f]{64})\.compiled$")  # a wasm app's compiled modules, beside it
WASM_MAGIC = b"\0asm\x01\0\0\0"  # a core module (a component has another version)
_S_IFMT = 0o170000
_S_IFREG, _S_IFDIR = 0o100000, 0o040000


class BundleRefused(Exception):
    """The bundle is not what the project signed, or not safe to unpack; ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _sha256_of(app_version: dict[str, Any]) -> str:
    """The declared hash, which also names the cache folder: lowercase hex or nothing."""
    sha = app_version.get("sha256") if isinstance(app_version, dict) else None
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise BundleRefused(
            "bad_app_version", f"the app version's sha256 {sha!r} is not 64 lowercase hex digits"
        )
    return sha


def _signed_fields(app_version: dict[str, Any]) -> tuple[str, int, str, bytes]:
    app, version, platform = (app_version.get(k) for k in ("app", "version", "platform"))
    if not isinstance(app, str) or not isinstance(platform, str):
        raise BundleRefused("bad_app_version", "the app version needs an app name and a platform")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleRefused("bad_app_version", f"the app version number {version!r} is not an integer")
    try:
        signature = b64decode(app_version.get("signature"))  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError) as error:
        raise BundleRefused("bad_signature", f"the signature of {app} v{version} is not base64") from error
    return app, version, platform, signature


def check_signature(app_version: dict[str, Any], pinned_key: bytes) -> None:
    """The pinned key signed this app name, version, platform and hash (no bundle bytes needed)."""
    sha = _sha256_of(app_version)
    app, version, platform, signature = _signed_fields(app_version)
    message = bundle_message(app=app, version=version, platform=platform, sha256=sha)
    if not signature_is_valid(pinned_key, message, signature):
        raise BundleRefused(
            "bad_signature",
            f"{app} v{version} ({platform}) is not signed by the project's pinned key: "
            "refusing to run it (the coordinator may have been tampered with)",
        )


def verify_bundle(app_version: dict[str, Any], data: bytes, pinned_key: bytes) -> None:
    """Refuse ``data`` unless it has the declared size and hash and the pinned key signed it."""
    if not isinstance(app_version, dict):
        raise BundleRefused("bad_app_version", "the app version is not a JSON object")
    declared = _sha256_of(app_version)
    size = app_version.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BundleRefused("bad_app_version", f"the app version's size {size!r} is not a byte count")
    if len(data) != size:
        raise BundleRefused("size_mismatch", f"the bundle is {len(data)} bytes, the coordinator said {size}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != declared:
        raise BundleRefused(
            "hash_mismatch", f"the bundle's SHA-256 is {actual}, the coordinator said {declared}"
        )
    check_signature(app_version, pinned_key)


def compiled_dir(app_folder: Path) -> Path:
    """Where the wasm runner keeps the compiled module of the app unpacked in ``app_folder``
    (which is read-only): beside it, removed with it by :meth:`AppCache.prune`."""
    return app_folder.with_name(f"{app_folder.name}.compiled")


def _check_wasm_magic(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse now, not at every task, an entrypoint that is no WebAssembly module at all."""
    try:
        with archive.open(info) as handle:
            magic = handle.read(len(WASM_MAGIC))
    except ARCHIVE_ERRORS as error:
        raise BundleRefused("bad_archive", f"cannot read {info.filename!r}: {error}") from error
    if magic != WASM_MAGIC:
        raise BundleRefused(
            "bad_manifest", f"the entrypoint {info.filename!r} is not a WebAssembly core module"
        )


class _Plan:
    """What a bundle holds, checked before anything is written: files, folders and the entrypoint."""

    def __init__(self, files: list[zipfile.ZipInfo], dirs: list[str], manifest: AppManifest) -> None:
        self.files, self.dirs, self.manifest = files, dirs, manifest

    def mode(self, name: str) -> int:
        """A file's mode once unpacked: read-only, and executable for a native app's entrypoint."""
        return EXECUTABLE_MODE if self.manifest.is_native and name == self.manifest.entrypoint else FILE_MODE


class AppCache:
    """Verified, unpacked apps under ``root``, one folder per bundle hash."""

    def __init__(
        self, root: Path, *, max_unpacked_bytes: int = 256 * 1024 * 1024, max_entries: int = 10000
    ) -> None:
        self.root = Path(root)
        self.max_unpacked_bytes = max_unpacked_bytes
        self.max_entries = max_entries

    # -- finding ----------------------------------------------------------------------
    def lookup(self, app_version: dict[str, Any], pinned_key: bytes | None = None) -> Path | None:
        """The entrypoint if this bundle is unpacked here, else ``None``.

        With ``pinned_key`` the app version's signature is checked too (``BundleRefused``), so a
        coordinator cannot have the host run an app the cache holds for another project under
        a version its own key never signed. Pass it whenever the key is at hand.
        """
        sha = _sha256_of(app_version)
        if pinned_key is not None:
            check_signature(app_version, pinned_key)
        return self._entrypoint(self.root / sha)

    @staticmethod
    def _entrypoint(folder: Path) -> Path | None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            entrypoint = folder / check_relative_path(manifest["entrypoint"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entrypoint if entrypoint.is_file() and not entrypoint.is_symlink() else None

    # -- installing -------------------------------------------------------------------
    def install(self, app_version: dict[str, Any], data: bytes, pinned_key: bytes) -> Path:
        """Verify, unpack and return the entrypoint; installing the same bundle again is harmless."""
        verify_bundle(app_version, data, pinned_key)
        sha = _sha256_of(app_version)
        final = self.root / sha
        found = self._entrypoint(final)
        if found is not None:
            return found
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except ARCHIVE_ERRORS as error:
            raise BundleRefused(
                "bad_archive", f"the bundle is not a readable zip archive: {error}"
            ) from error
        with archive:
            plan = self._plan(archive)
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{UNPACK_PREFIX}{sha[:16]}-", dir=self.root))
            try:
                self._unpack(archive, plan, staging)
                self._install_wheels(staging)
                self._publish(staging, final)
            finally:
                if staging.exists():
                    remove_tree(staging)
        found = self._entrypoint(final)
        if found is None:  # cannot happen unless someone changes the cache under us
            raise BundleRefused("bad_archive", f"the unpacked app in {final} is incomplete")
        return found

    def _plan(self, archive: zipfile.ZipFile) -> _Plan:
        """Check every entry and the manifest; nothing has been written yet."""
        entries = archive.infolist()
        if len(entries) > self.max_entries:
            raise BundleRefused(
                "too_large", f"the bundle has {len(entries)} entries; at most {self.max_entries}"
            )
        files: list[zipfile.ZipInfo] = []
        dirs: list[str] = []
        seen: dict[str, str] = {}  # case-folded name -> kind, for case-insensitive file systems
        declared = 0
        for info in entries:
            is_dir = info.filename.endswith("/")
            name = info.filename[:-1] if is_dir else info.filename
            try:
                check_relative_path(name)
            except ValueError as error:
                raise BundleRefused("unsafe_path", f"the bundle holds an unsafe path: {error}") from error
            kind = (info.external_attr >> 16) & _S_IFMT
            if kind == stat.S_IFLNK:
                raise BundleRefused("unsafe_path", f"{name!r} is a symbolic link; bundles may not hold links")
            if kind not in (0, _S_IFREG, _S_IFDIR) or (kind == _S_IFDIR and not is_dir):
                raise BundleRefused("unsafe_path", f"{name!r} is not a plain file or folder")
            if info.flag_bits & 0x1:
                raise BundleRefused("bad_archive", f"{name!r} is encrypted")
            key = name.casefold()
            if key in seen:
                raise BundleRefused("duplicate_name", f"the bundle holds {name!r} twice (letter case aside)")
            seen[key] = "dir" if is_dir else "file"
            if is_dir:
                dirs.append(name)
            else:
                files.append(info)
                declared += info.file_size
        for name in seen:  # a file may not also be a folder: "a" and "a/b"
            parts = name.split("/")
            for depth in range(1, len(parts)):
                if seen.get("/".join(parts[:depth])) == "file":
                    raise BundleRefused(
                        "duplicate_name", f"{'/'.join(parts[:depth])!r} is a file and a folder"
                    )
        if declared > self.max_unpacked_bytes:
            raise BundleRefused(
                "too_large", f"the bundle unpacks to {declared} bytes; at most {self.max_unpacked_bytes}"
            )
        return _Plan(files, dirs, self._check_manifest(archive, files))

    def _check_manifest(self, archive: zipfile.ZipFile, files: list[zipfile.ZipInfo]) -> AppManifest:
        by_name = {info.filename: info for info in files}
        info = by_name.get(MANIFEST)
        if info is None:
            raise BundleRefused("no_manifest", f"the bundle has no {MANIFEST} at its root")
        try:
            with archive.open(info) as handle:
                raw = handle.read(MANIFEST_MAX_BYTES + 1)
        except ARCHIVE_ERRORS as error:
            raise BundleRefused("bad_archive", f"cannot read {MANIFEST}: {error}") from error
        if len(raw) > MANIFEST_MAX_BYTES:
            raise BundleRefused("bad_manifest", f"{MANIFEST} is over {MANIFEST_MAX_BYTES} bytes")
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise BundleRefused("bad_manifest", f"{MANIFEST} is not JSON: {error}") from error
        try:
            checked = parse_manifest(manifest)
        except ValueError as error:
            raise BundleRefused("bad_manifest", str(error)) from error
        if checked.entrypoint not in by_name:
            name = checked.entrypoint
            raise BundleRefused("bad_manifest", f"the entrypoint {name!r} is not a file in the bundle")
        if checked.is_wasm:
            _check_wasm_magic(archive, by_name[checked.entrypoint])
        return checked

    def _unpack(self, archive: zipfile.ZipFile, plan: _Plan, staging: Path) -> None:
        """Write the planned entries, counting the bytes really decompressed, and make them durable."""
        folders = {staging}
        for name in plan.dirs:
            (staging / name).mkdir(parents=True, exist_ok=True)
            folders.add(staging / name)
        total = 0
        for info in plan.files:
            target = staging / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.update(p for p in target.parents if staging in p.parents or p == staging)
            flags = (
                os.O_WRONLY
                | os.O_CREAT
                | os.O_EXCL
                | getattr(os, "O_NOFOLLOW", 0)
                | getattr(os, "O_BINARY", 0)
            )
            try:
                with archive.open(info) as source, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                    while True:
                        chunk = source.read(CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > self.max_unpacked_bytes:
                            raise BundleRefused(
                                "too_large",
                                f"the bundle unpacks to over {self.max_unpacked_bytes} bytes "
                                "(more than its headers say)",
                            )
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            except BundleRefused:
                raise
            except ARCHIVE_ERRORS as error:  # a damaged entry, or the disk is full
                raise BundleRefused("bad_archive", f"cannot unpack {info.filename!r}: {error}") from error
            os.chmod(target, plan.mode(info.filename))
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            sync_directory(folder)
            if folder != staging:
                os.chmod(folder, DIR_MODE)

    def _install_wheels(self, staging: Path) -> None:
        """A Python app's pinned wheels, checked and unpacked into ``site/`` (tessera_client.wheels)."""
        try:
            install_wheels(staging, max_unpacked_bytes=self.max_unpacked_bytes, max_entries=self.max_entries)
        except WheelRefused as error:
            raise BundleRefused(error.code, error.message) from error

    def _publish(self, staging: Path, final: Path) -> None:
        """Rename the complete app into place; a rival install of the same bundle may have won."""
        try:
            os.rename(staging, final)
        except OSError:
            if self._entrypoint(final) is not None:
                return  # installed meanwhile by another thread or process: the same bytes
            if not os.path.lexists(final):
                raise
            # A broken folder under the app's name (not made by us): set it aside and retry.
            trash = final.with_name(f"{TRASH_PREFIX}{final.name}-{secrets.token_hex(6)}")
            os.rename(final, trash)
            remove_tree(trash)
            os.rename(staging, final)
        with contextlib.suppress(OSError):
            os.chmod(final, DIR_MODE)
        sync_directory(self.root)

    # -- pruning ----------------------------------------------------------------------
    def prune(self, keep_sha256: set[str]) -> int:
        """Remove every cached app not in ``keep_sha256``; returns how many were removed.

        Leftover unpack folders of crashed installs go too, once they are old enough that no
        install can still be writing them.
        """
        if not self.root.is_dir():
            return 0
        removed = 0
        now = time.time()
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            compiled = _COMPILED.match(name)
            if compiled and compiled.group(1) not in keep_sha256:
                with contextlib.suppress(OSError):
                    remove_tree(entry)  # a cache: a half-removed one is rebuilt, never trusted
            elif _SHA256.match(name):
                if name in keep_sha256:
                    continue
                trash = entry.with_name(f"{TRASH_PREFIX}{name}-{secrets.token_hex(6)}")
                try:
                    os.rename(entry, trash)  # the app vanishes at once, never half-deleted
                except FileNotFoundError:
                    continue
                remove_tree(trash)
                removed += 1
            elif name.startswith((UNPACK_PREFIX, TRASH_PREFIX)):
                with contextlib.suppress(OSError):
                    if now - entry.lstat().st_mtime > STALE_SECONDS:
                        remove_tree(entry)
        return removed
