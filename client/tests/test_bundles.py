"""Signed apps only: a bundle is checked against the pinned key before anything is unpacked."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import stat
import struct
import subprocess
import sys
import threading
import time
import warnings
import zipfile

import pytest
from nacl.signing import SigningKey

from tessera_client.bundles import AppCache, BundleRefused, verify_bundle
from tessera_client.signing import b64encode, bundle_message

PROJECT_KEY = SigningKey.generate()
PINNED = bytes(PROJECT_KEY.verify_key)
MANIFEST = {"api": 1, "entrypoint": "main.py"}
MAIN = b"import helper\nprint(helper.GREETING)\n"
HELPER = b"GREETING = 'hello from the bundle'\n"


def make_zip(entries: list[tuple[object, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of (name or ZipInfo, data) in order; duplicates allowed (zipfile only warns)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def good_entries(manifest: object = MANIFEST) -> list[tuple[object, bytes]]:
    text = manifest if isinstance(manifest, (bytes, str)) else json.dumps(manifest)
    return [
        ("tessera-app.json", text.encode() if isinstance(text, str) else text),
        ("main.py", MAIN),
        ("helper.py", HELPER),
        ("lib/", b""),
        ("lib/data/table.txt", b"1 2 3\n"),
    ]


def sign(
    data: bytes,
    key: SigningKey = PROJECT_KEY,
    *,
    app: str = "demo",
    version: int = 3,
    platform: str = "linux-x86_64",
    signed_as: dict | None = None,
) -> dict:
    """The app version a coordinator would send; ``signed_as`` signs other fields than declared."""
    sha = hashlib.sha256(data).hexdigest()
    fields = dict(app=app, version=version, platform=platform, sha256=sha)
    fields.update(signed_as or {})
    signature = key.sign(bundle_message(**fields)).signature
    return {
        "id": 1,
        "app": app,
        "version": version,
        "platform": platform,
        "url": "/api/v1/app-versions/1/bundle",
        "sha256": sha,
        "signature": b64encode(signature),
        "size": len(data),
    }


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def lying_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size an entry declares, in both headers: a zip bomb's trick."""
    patched = bytearray(data)
    for signature, name_length_at, name_at, size_at in (
        (b"PK\x03\x04", 26, 30, 22),
        (b"PK\x01\x02", 28, 46, 24),
    ):
        at = patched.find(signature)
        while at >= 0:
            length = struct.unpack_from("<H", patched, at + name_length_at)[0]
            if bytes(patched[at + name_at : at + name_at + length]) == name:
                struct.pack_into("<I", patched, at + size_at, size)
            at = patched.find(signature, at + 4)
    return bytes(patched)


@pytest.fixture
def cache(tmp_path):
    return AppCache(tmp_path / "apps", max_unpacked_bytes=1024 * 1024, max_entries=50)


def assert_nothing_unpacked(cache: AppCache, tmp_path) -> None:
    held = list(cache.root.iterdir()) if cache.root.exists() else []
    assert held == [], f"the cache holds {held}"
    assert sorted(p.name for p in tmp_path.iterdir()) in (["apps"], [])


# -- a good bundle ----------------------------------------------------------------------
def test_a_signed_bundle_installs_and_is_found_again(cache):
    data = make_zip(good_entries())
    version = sign(data)
    assert cache.lookup(version) is None
    entrypoint = cache.install(version, data, PINNED)
    assert entrypoint == cache.root / version["sha256"] / "main.py"
    assert entrypoint.read_bytes() == MAIN
    assert (entrypoint.parent / "lib" / "data" / "table.txt").read_bytes() == b"1 2 3\n"
    assert cache.lookup(version) == entrypoint
    assert cache.lookup(version, PINNED) == entrypoint
    assert cache.install(version, data, PINNED) == entrypoint  # again: harmless
    assert sorted(p.name for p in cache.root.iterdir()) == [version["sha256"]]


def test_the_installed_app_runs_and_imports_its_siblings(cache, tmp_path):
    data = make_zip(good_entries())
    entrypoint = cache.install(sign(data), data, PINNED)
    slot = tmp_path / "slot"
    slot.mkdir()
    result = subprocess.run(
        [sys.executable, "-E", "-s", str(entrypoint)], cwd=slot, capture_output=True, timeout=30, check=True
    )
    assert result.stdout.strip() == b"hello from the bundle"


def test_the_installed_files_are_read_only(cache):
    data = make_zip(good_entries())
    entrypoint = cache.install(sign(data), data, PINNED)
    top = entrypoint.parent
    modes = {p.relative_to(top).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [top, *top.rglob("*")]}
    assert modes == {
        ".": 0o555,
        "tessera-app.json": 0o444,
        "main.py": 0o444,
        "helper.py": 0o444,
        "lib": 0o555,
        "lib/data": 0o555,
        "lib/data/table.txt": 0o444,
    }
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes through permissions
        with pytest.raises(PermissionError):
            entrypoint.write_text("print('changed')")
        with pytest.raises(PermissionError):
            (top / "new.py").write_text("")


def test_a_lookup_with_another_projects_key_is_refused(cache):
    data = make_zip(good_entries())
    version = sign(data)
    cache.install(version, data, PINNED)
    with pytest.raises(BundleRefused) as refused:
        cache.lookup(version, bytes(SigningKey.generate().verify_key))
    assert refused.value.code == "bad_signature"


def test_concurrent_installs_of_one_bundle_agree(cache):
    data = make_zip(good_entries())
    version = sign(data)
    results, errors = [], []

    def install():
        try:
            results.append(cache.install(version, data, PINNED))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=install) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == 6 and len(set(results)) == 1
    assert sorted(p.name for p in cache.root.iterdir()) == [version["sha256"]]


# -- what the signature and the hash refuse ---------------------------------------------
def test_a_tampered_bundle_is_refused(cache, tmp_path):
    data = make_zip(good_entries())
    version = sign(data)
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0x01
    with pytest.raises(BundleRefused) as refused:
        cache.install(version, bytes(tampered), PINNED)
    assert refused.value.code == "hash_mismatch"
    assert_nothing_unpacked(cache, tmp_path)


def test_a_bundle_signed_by_another_key_is_refused(cache, tmp_path):
    data = make_zip(good_entries())
    with pytest.raises(BundleRefused) as refused:
        cache.install(sign(data, SigningKey.generate()), data, PINNED)
    assert refused.value.code == "bad_signature" and "pinned key" in str(refused.value)
    assert_nothing_unpacked(cache, tmp_path)


@pytest.mark.parametrize(
    "signed_as", [{"app": "other"}, {"version": 2}, {"platform": "windows-x86_64"}, {"sha256": "0" * 64}]
)
def test_a_signature_for_another_app_version_is_refused(cache, tmp_path, signed_as):
    data = make_zip(good_entries())
    with pytest.raises(BundleRefused) as refused:
        cache.install(sign(data, signed_as=signed_as), data, PINNED)
    assert refused.value.code == "bad_signature"
    assert_nothing_unpacked(cache, tmp_path)


@pytest.mark.parametrize("signature", ["", "not base64!", None, "AAAA"])
def test_a_malformed_signature_is_refused(signature):
    data = make_zip(good_entries())
    version = dict(sign(data), signature=signature)
    with pytest.raises(BundleRefused) as refused:
        verify_bundle(version, data, PINNED)
    assert refused.value.code == "bad_signature"


def test_a_size_mismatch_is_refused(cache, tmp_path):
    data = make_zip(good_entries())
    version = dict(sign(data), size=len(data) + 1)
    with pytest.raises(BundleRefused) as refused:
        cache.install(version, data, PINNED)
    assert refused.value.code == "size_mismatch"
    assert_nothing_unpacked(cache, tmp_path)


@pytest.mark.parametrize("sha", ["../../etc", "A" * 64, "0" * 63, None])
def test_a_hash_that_is_not_hex_cannot_name_a_folder(cache, tmp_path, sha):
    data = make_zip(good_entries())
    version = dict(sign(data), sha256=sha)
    with pytest.raises(BundleRefused) as refused:
        cache.install(version, data, PINNED)
    assert refused.value.code == "bad_app_version"
    with pytest.raises(BundleRefused):
        cache.lookup(version)
    assert_nothing_unpacked(cache, tmp_path)


def test_the_signature_is_checked_before_the_archive_is_read(cache, tmp_path):
    data = make_zip([("../escape.py", b"x"), *good_entries()])
    with pytest.raises(BundleRefused) as refused:
        cache.install(sign(data, SigningKey.generate()), data, PINNED)
    assert refused.value.code == "bad_signature"


# -- what unpacking refuses, even when signed -------------------------------------------
BAD_BUNDLES = {
    "not_a_zip": (b"this is not a zip archive at all", "bad_archive"),
    "dot_dot": (make_zip([*good_entries(), ("../escape.py", b"x")]), "unsafe_path"),
    "dot_dot_inside": (make_zip([*good_entries(), ("lib/../../escape.py", b"x")]), "unsafe_path"),
    "absolute": (make_zip([*good_entries(), ("/tmp/escape.py", b"x")]), "unsafe_path"),
    "drive_letter": (make_zip([*good_entries(), ("C:/escape.py", b"x")]), "unsafe_path"),
    "backslash": (make_zip([*good_entries(), ("..\\escape.py", b"x")]), "unsafe_path"),
    "symlink": (make_zip([*good_entries(), (symlink_entry("lib/link"), b"/etc/passwd")]), "unsafe_path"),
    "duplicate": (make_zip([*good_entries(), ("main.py", b"print('second')")]), "duplicate_name"),
    "duplicate_case": (make_zip([*good_entries(), ("MAIN.py", b"x")]), "duplicate_name"),
    "file_and_folder": (make_zip([*good_entries(), ("main.py/x.py", b"x")]), "duplicate_name"),
    "no_manifest": (make_zip(good_entries()[1:]), "no_manifest"),
    "manifest_in_folder": (
        make_zip([("sub/tessera-app.json", json.dumps(MANIFEST).encode()), ("main.py", MAIN)]),
        "no_manifest",
    ),
    "manifest_not_json": (make_zip(good_entries(b"{api: 1")), "bad_manifest"),
    "manifest_list": (make_zip(good_entries([1, "main.py"])), "bad_manifest"),
    "api_2": (make_zip(good_entries({"api": 2, "entrypoint": "main.py"})), "bad_manifest"),
    "api_true": (make_zip(good_entries({"api": True, "entrypoint": "main.py"})), "bad_manifest"),
    "entry_outside": (make_zip(good_entries({"api": 1, "entrypoint": "../main.py"})), "bad_manifest"),
    "entry_absolute": (make_zip(good_entries({"api": 1, "entrypoint": "/usr/lib/main.py"})), "bad_manifest"),
    "entry_missing": (make_zip(good_entries({"api": 1, "entrypoint": "absent.py"})), "bad_manifest"),
    "entry_folder": (
        make_zip([*good_entries({"api": 1, "entrypoint": "pkg.py"}), ("pkg.py/", b"")]),
        "bad_manifest",
    ),
    "entry_not_py": (make_zip(good_entries({"api": 1, "entrypoint": "lib/data/table.txt"})), "bad_manifest"),
    "entry_not_text": (make_zip(good_entries({"api": 1, "entrypoint": 7})), "bad_manifest"),
    "zip_bomb": (make_zip([*good_entries(), ("zeros.bin", bytes(2 * 1024 * 1024))]), "too_large"),
    "many_small_files": (
        make_zip([*good_entries(), *((f"f{i}", bytes(40_000)) for i in range(30))]),
        "too_large",
    ),
    "too_many_entries": (make_zip([*good_entries(), *((f"e{i}.txt", b"") for i in range(60))]), "too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_an_unsafe_bundle_is_refused_and_nothing_is_unpacked(cache, tmp_path, case):
    data, code = BAD_BUNDLES[case]
    version = sign(data)
    verify_bundle(version, data, PINNED)  # properly signed: the refusal is the unpacker's
    with pytest.raises(BundleRefused) as refused:
        cache.install(version, data, PINNED)
    assert refused.value.code == code, str(refused.value)
    assert str(refused.value)
    assert cache.lookup(version) is None
    assert_nothing_unpacked(cache, tmp_path)


def test_a_bomb_that_lies_about_its_size_is_refused(cache, tmp_path):
    honest = make_zip([*good_entries(), ("zeros.bin", bytes(4 * 1024 * 1024))])
    data = lying_sizes(honest, b"zeros.bin", 10)
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo("zeros.bin").file_size == 10
    with pytest.raises(BundleRefused) as refused:
        cache.install(sign(data), data, PINNED)
    # zipfile stops at the declared size and the CRC then fails; past it, our count would stop it
    assert refused.value.code in ("bad_archive", "too_large")
    assert_nothing_unpacked(cache, tmp_path)


# -- crashes and pruning ----------------------------------------------------------------
def test_a_half_unpacked_app_is_not_taken_for_installed(cache):
    data = make_zip(good_entries())
    version = sign(data)
    leftover = cache.root / f".unpack-{version['sha256'][:16]}-crash"
    leftover.mkdir(parents=True)
    (leftover / "main.py").write_bytes(b"half")
    assert cache.lookup(version) is None
    assert cache.install(version, data, PINNED).read_bytes() == MAIN
    assert cache.prune({version["sha256"]}) == 0
    assert leftover.exists()  # recent: an install may still be writing it
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    cache.prune({version["sha256"]})
    assert sorted(p.name for p in cache.root.iterdir()) == [version["sha256"]]


def test_a_broken_app_folder_is_replaced(cache):
    data = make_zip(good_entries())
    version = sign(data)
    (cache.root / version["sha256"]).mkdir(parents=True)
    (cache.root / version["sha256"] / "main.py").write_bytes(b"not the app")
    assert cache.lookup(version) is None
    entrypoint = cache.install(version, data, PINNED)
    assert entrypoint.read_bytes() == MAIN
    assert sorted(p.name for p in cache.root.iterdir()) == [version["sha256"]]


def test_prune_removes_apps_not_kept(cache):
    first = make_zip(good_entries())
    second = make_zip([*good_entries(), ("extra.py", b"")])
    kept, dropped = sign(first), sign(second, version=4)
    cache.install(kept, first, PINNED)
    cache.install(dropped, second, PINNED)
    assert cache.prune({kept["sha256"]}) == 1
    assert cache.lookup(dropped) is None
    assert cache.lookup(kept).read_bytes() == MAIN
    assert sorted(p.name for p in cache.root.iterdir()) == [kept["sha256"]]
    assert cache.prune(set()) == 1
    assert list(cache.root.iterdir()) == []
    assert AppCache(cache.root.parent / "never-made").prune(set()) == 0


def test_damaged_archives_are_refused_cleanly(cache):
    """Random byte flips in a signed bundle: a refusal with a code or a clean install, nothing else."""
    base = make_zip(good_entries())
    rng = random.Random(20261125)
    codes = set()
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        version = sign(bytes(data))
        try:
            cache.install(version, bytes(data), PINNED)
        except BundleRefused as refusal:
            codes.add(refusal.code)
        cache.prune(set())
        assert not cache.root.exists() or list(cache.root.iterdir()) == []
    assert "bad_archive" in codes
