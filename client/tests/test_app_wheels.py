"""A Python app's pinned wheels: checked against the manifest, unpacked into site/, imported at run time."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import time
import zipfile
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from tessera_client.bundles import AppCache, BundleRefused
from tessera_client.sandbox import AppProcess, Limits
from tessera_client.signing import b64encode, bundle_message
from tessera_client.wheels import running_python

PROJECT_KEY = SigningKey.generate()
PINNED = bytes(PROJECT_KEY.verify_key)
WHEEL = "tinydep-1.0-py3-none-any.whl"
MiB = 1024 * 1024
# What the coordinator's generated main.py does (coordinator/work/bundles.py), in small.
MAIN = b"""\
import json, os, sys
sys.path.insert(1, os.path.join(os.path.dirname(os.path.abspath(__file__)), "site"))
import tinydep, tinyextra
with open(os.environ["TESSERA_OUTPUT"], "w") as out:
    json.dump({"value": tinydep.VALUE, "extra": tinyextra.EXTRA, "from": tinydep.__file__}, out)
"""


def zip_of(entries: list[tuple[object, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)  # type: ignore[arg-type]
    return buffer.getvalue()


def tiny_wheel(*extra: tuple[object, bytes]) -> bytes:
    """A real (if small) wheel: a package, its metadata, a purelib module and a script."""
    return zip_of(
        [
            ("tinydep/__init__.py", b"VALUE = 42\n"),
            ("tinydep/data/", b""),
            ("tinydep-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n"),
            (
                "tinydep-1.0.dist-info/WHEEL",
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            ),
            ("tinydep-1.0.data/purelib/tinyextra.py", b"EXTRA = 'from purelib'\n"),
            ("tinydep-1.0.data/scripts/tinytool", b"#!/bin/sh\necho no\n"),
            *extra,
        ]
    )


def bundle_with(wheel: bytes, *, sha256: str | None = None, **manifest: object) -> bytes:
    description = {
        "api": 1,
        "entrypoint": "main.py",
        "wheels": [{"file": WHEEL, "sha256": sha256 or hashlib.sha256(wheel).hexdigest()}],
        **manifest,
    }
    return zip_of(
        [
            ("tessera-app.json", json.dumps(description).encode()),
            ("main.py", MAIN),
            (f"wheels/{WHEEL}", wheel),
        ]
    )


def signed(data: bytes) -> dict:
    """The app version a coordinator would send: the project signed the bundle as it is."""
    sha = hashlib.sha256(data).hexdigest()
    message = bundle_message(app="tiny", version=1, platform="x86_64-pc-linux-gnu", sha256=sha)
    return {
        "id": 1,
        "app": "tiny",
        "version": 1,
        "platform": "x86_64-pc-linux-gnu",
        "url": "/api/v1/app-versions/1/bundle",
        "sha256": sha,
        "signature": b64encode(PROJECT_KEY.sign(message).signature),
        "size": len(data),
    }


def refused(tmp_path: Path, data: bytes) -> BundleRefused:
    cache = AppCache(tmp_path / "apps")
    with pytest.raises(BundleRefused) as caught:
        cache.install(signed(data), data, PINNED)
    assert not [p for p in (tmp_path / "apps").iterdir() if not p.name.startswith(".")]
    return caught.value


def test_a_bundle_with_a_wheel_installs_and_its_app_imports_it_in_the_sandbox(tmp_path):
    data = bundle_with(tiny_wheel())

    entrypoint = AppCache(tmp_path / "apps").install(signed(data), data, PINNED)

    app = entrypoint.parent
    site = app / "site"
    assert (site / "tinydep" / "__init__.py").read_text() == "VALUE = 42\n"
    assert (site / "tinyextra.py").is_file() and (site / "tinydep-1.0.dist-info" / "METADATA").is_file()
    assert not (site / "tinydep-1.0.data").exists() and not (site / "tinytool").exists()
    assert not (app / "wheels").exists()  # unpacked, the wheel itself is gone
    assert stat.S_IMODE((site / "tinydep" / "__init__.py").stat().st_mode) == 0o444
    assert stat.S_IMODE(site.stat().st_mode) == 0o555
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "input").write_text("")
    limits = Limits(
        cpu_seconds=20,
        memory_bytes=512 * MiB,
        file_bytes=64 * MiB,
        processes=32,
        wall_deadline=time.time() + 20,
    )
    process = AppProcess.start(entrypoint=entrypoint, slot=slot, limits=limits)
    outcome = process.wait(20)
    if outcome is None:
        process.kill("the test timed out")
    assert outcome is not None and outcome.status == "success", outcome.message
    result = json.loads((slot / "output").read_text())
    assert result["value"] == 42 and result["extra"] == "from purelib"
    assert Path(result["from"]).resolve() == (site / "tinydep" / "__init__.py").resolve()


def test_a_wheel_whose_bytes_do_not_match_the_manifest_is_refused(tmp_path):
    wheel = tiny_wheel()
    wrong = hashlib.sha256(wheel + b"x").hexdigest()

    error = refused(tmp_path, bundle_with(wheel, sha256=wrong))

    assert error.code == "wheel_hash_mismatch"
    assert WHEEL in error.message and wrong in error.message
    assert hashlib.sha256(wheel).hexdigest() in error.message


@pytest.mark.parametrize(
    "name", ["../escaped.py", "tinydep/../../escaped.py", "/tmp/escaped.py", "a\\..\\b.py"]
)
def test_a_wheel_with_a_member_escaping_the_folder_is_refused(tmp_path, name):
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # zipfile would clean some of these names; a hostile wheel does not

    error = refused(tmp_path, bundle_with(tiny_wheel((info, b"print('out')\n"))))

    assert error.code == "unsafe_path" and WHEEL in error.message
    assert not (tmp_path / "escaped.py").exists() and not Path("/tmp/escaped.py").exists()


def test_a_wheel_holding_a_link_is_refused(tmp_path):
    link = zipfile.ZipInfo("tinydep/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16

    error = refused(tmp_path, bundle_with(tiny_wheel((link, b"/etc/passwd"))))

    assert error.code == "unsafe_path" and "link" in error.message


def test_a_bundle_for_another_python_is_refused_saying_which(tmp_path):
    error = refused(tmp_path, bundle_with(tiny_wheel(), python="3.8"))

    assert error.code == "wrong_python"
    assert "Python 3.8" in error.message and running_python() in error.message


def test_the_bundle_for_this_python_installs(tmp_path):
    data = bundle_with(tiny_wheel(), python=f"{sys.version_info[0]}.{sys.version_info[1]}")

    entrypoint = AppCache(tmp_path / "apps").install(signed(data), data, PINNED)

    assert (entrypoint.parent / "site" / "tinydep" / "__init__.py").is_file()


def test_a_wheel_the_manifest_does_not_list_is_refused(tmp_path):
    wheel = tiny_wheel()
    description = {"api": 1, "entrypoint": "main.py", "wheels": []}
    data = zip_of(
        [
            ("tessera-app.json", json.dumps(description).encode()),
            ("main.py", MAIN),
            (f"wheels/{WHEEL}", wheel),
        ]
    )

    error = refused(tmp_path, data)

    assert error.code == "bad_manifest" and WHEEL in error.message


def test_a_listed_wheel_missing_from_the_bundle_is_refused(tmp_path):
    wheel = tiny_wheel()
    description = {"api": 1, "entrypoint": "main.py", "wheels": [{"file": WHEEL, "sha256": "0" * 64}]}
    data = zip_of([("tessera-app.json", json.dumps(description).encode()), ("main.py", MAIN)])

    error = refused(tmp_path, data)

    assert error.code == "bad_manifest" and "lacks" in error.message
    assert wheel  # the bundle simply does not hold it


def test_two_wheels_writing_the_same_file_are_refused(tmp_path):
    first, second = tiny_wheel(), tiny_wheel(("tinydep/more.py", b""))
    names = [WHEEL, "tinydep2-1.0-py3-none-any.whl"]
    description = {
        "api": 1,
        "entrypoint": "main.py",
        "wheels": [
            {"file": n, "sha256": hashlib.sha256(w).hexdigest()} for n, w in zip(names, (first, second))
        ],
    }
    data = zip_of(
        [
            ("tessera-app.json", json.dumps(description).encode()),
            ("main.py", MAIN),
            *((f"wheels/{n}", w) for n, w in zip(names, (first, second))),
        ]
    )

    error = refused(tmp_path, data)

    assert error.code == "duplicate_name" and "tinydep/__init__.py" in error.message


def test_a_wheel_unpacking_past_the_limit_is_refused(tmp_path):
    data = bundle_with(tiny_wheel(("tinydep/big.bin", b"\0" * (2 * MiB))))
    cache = AppCache(tmp_path / "apps", max_unpacked_bytes=1 * MiB + 512 * 1024)

    with pytest.raises(BundleRefused) as caught:
        cache.install(signed(data), data, PINNED)

    assert caught.value.code == "too_large"
    assert not [p for p in os.listdir(tmp_path / "apps") if not p.startswith(".")]
