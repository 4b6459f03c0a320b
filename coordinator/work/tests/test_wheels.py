"""Publishing a Python app with pinned wheels: fetched once, checked, bundled per platform.

Nothing here reaches the internet: the wheels come from a local folder (``find_links``), as an
offline operator's would. The numpy app's own wheel comes from the cache ``make`` fills.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import call_command
from tessera_client.bundles import AppCache
from tessera_client.sandbox import AppProcess, Limits
from tessera_client.signing import bundle_message, signature_is_valid

from coordinator.core import keys
from coordinator.core.errors import Conflict, InvalidInput
from coordinator.work import wheels
from coordinator.work.models import App, AppVersion
from coordinator.work.publishing import publish_app
from workunits import spectra
from workunits.interface import Checkpoint, Manifest, Wheel
from workunits.tests.pinned_numpy import can_run_here, wheel_folder

pytestmark = pytest.mark.django_db
TINY = "tinydep-1.0-py3-none-any.whl"
LINUX, ARM = "x86_64-pc-linux-gnu", "aarch64-unknown-linux-gnu"
MiB = 1024 * 1024


@pytest.fixture
def signing_key():
    return keys.create_project_key(keys.project_key_path())


@pytest.fixture
def local(tmp_path) -> Path:
    """A find-links folder holding a tiny pure-Python wheel."""
    folder = tmp_path / "find-links"
    folder.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tinydep/__init__.py", "VALUE = 42\n")
        archive.writestr(
            "tinydep-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n"
        )
    (folder / TINY).write_bytes(buffer.getvalue())
    return folder


def tiny(local: Path, sha256: str | None = None) -> Wheel:
    return Wheel(TINY, sha256 or hashlib.sha256((local / TINY).read_bytes()).hexdigest())


def with_wheels(monkeypatch, pinned: dict[str, tuple[Wheel, ...]]) -> None:
    """spectra, pinned to other wheels."""
    monkeypatch.setattr(spectra, "MANIFEST", replace(spectra.MANIFEST, wheels=pinned))


def publish(signing_key, local: Path | None, tmp_path: Path):
    return publish_app(name="spectra", signing_key=signing_key, find_links=local, wheel_cache=tmp_path / "c")


def test_a_matching_wheel_goes_into_each_platforms_signed_bundle_and_manifest(
    signing_key, local, tmp_path, monkeypatch
):
    wheel = tiny(local)
    with_wheels(monkeypatch, {LINUX: (wheel,), ARM: (wheel,)})

    published = publish(signing_key, local, tmp_path)

    versions = AppVersion.objects.filter(app__name="spectra").order_by("platform")
    assert [v.platform for v in versions] == [ARM, LINUX]  # one version per listed platform, no "any"
    assert published.created and sorted(v.platform for v, created in published.versions if created) == [
        ARM,
        LINUX,
    ]
    for version in versions:
        archive = zipfile.ZipFile(io.BytesIO(version.bundle.read()))
        assert archive.read(f"wheels/{TINY}") == (local / TINY).read_bytes()
        assert archive.getinfo(f"wheels/{TINY}").compress_type == zipfile.ZIP_STORED
        manifest = json.loads(archive.read("tessera-app.json"))
        assert manifest == {
            "api": 1,
            "entrypoint": "main.py",
            "wheels": [{"file": TINY, "sha256": wheel.sha256}],
        }
        assert b'"site"' in archive.read("main.py") and b"OPENBLAS_NUM_THREADS" in archive.read("main.py")
        message = bundle_message(
            app="spectra", version=version.version, platform=version.platform, sha256=version.bundle_sha256
        )
        assert signature_is_valid(bytes(signing_key.verify_key), message, base64.b64decode(version.signature))
        assert version.python == ""  # a pure-Python wheel runs on any Python
    assert (tmp_path / "c" / wheel.sha256 / TINY).is_file()  # fetched once, into the cache


def test_publishing_again_changes_nothing(signing_key, local, tmp_path, monkeypatch):
    with_wheels(monkeypatch, {LINUX: (tiny(local),)})
    publish(signing_key, local, tmp_path)
    (local / TINY).unlink()  # the cache serves it now

    again = publish(signing_key, local, tmp_path)

    assert not again.created and AppVersion.objects.count() == 1


def test_a_mismatched_hash_refuses_the_publish_and_makes_nothing(signing_key, local, tmp_path, monkeypatch):
    found = hashlib.sha256((local / TINY).read_bytes()).hexdigest()
    expected = "ab" * 32
    with_wheels(monkeypatch, {LINUX: (tiny(local),), ARM: (tiny(local, expected),)})

    with pytest.raises(InvalidInput) as caught:
        publish(signing_key, local, tmp_path)

    message = caught.value.message
    assert TINY in message and f"expected sha256 {expected}" in message and f"found {found}" in message
    assert caught.value.code == "bad_wheel"
    assert not App.objects.exists() and not AppVersion.objects.exists()
    assert not (tmp_path / "c" / expected).exists()


def test_a_damaged_cached_wheel_is_fetched_again(signing_key, local, tmp_path, monkeypatch):
    wheel = tiny(local)
    cached = tmp_path / "c" / wheel.sha256 / TINY
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"planted")

    assert wheels.fetch_wheel(wheel, cache=tmp_path / "c", find_links=local) == cached

    assert cached.read_bytes() == (local / TINY).read_bytes()


def test_a_wheel_missing_from_the_local_folder_is_named(local, tmp_path):
    absent = Wheel("absent-1.0-py3-none-any.whl", "cd" * 32)

    with pytest.raises(wheels.WheelError, match=r"absent-1\.0-py3-none-any\.whl is not in"):
        wheels.fetch_wheel(absent, cache=tmp_path / "c", find_links=local)


def test_pip_fetches_exactly_the_pinned_file_for_its_platform_and_python():
    command = wheels.pip_download_command(spectra.NUMPY, Path("/tmp/x"))

    assert command[1:5] == ["-m", "pip", "download", "--no-deps"] and "--only-binary=:all:" in command
    pairs = list(itertools.pairwise(command))
    assert ("--platform", "manylinux_2_17_x86_64") in pairs and (
        "--platform",
        "manylinux2014_x86_64",
    ) in pairs
    assert ("--python-version", "3.11") in pairs and ("--implementation", "cp") in pairs
    assert ("--abi", "cp311") in pairs and command[-1] == "numpy==2.2.6"


def test_an_app_published_for_any_platform_cannot_gain_wheels_under_the_same_version(
    signing_key, local, tmp_path, monkeypatch
):
    monkeypatch.setattr(spectra, "MANIFEST", replace(spectra.MANIFEST, wheels={}))
    publish_app(name="spectra", signing_key=signing_key)
    with_wheels(monkeypatch, {LINUX: (tiny(local),)})

    with pytest.raises(Conflict, match=r"already published for any"):
        publish(signing_key, local, tmp_path)
    assert list(AppVersion.objects.values_list("platform", flat=True)) == ["any"]


@pytest.mark.parametrize(
    ("wheels", "named"),
    [
        ({"sparc-sun-solaris": (Wheel(TINY, "0" * 64),)}, "not a platform"),
        ({LINUX: (spectra.NUMPY,), ARM: (spectra.NUMPY,)}, "does not run on aarch64"),
        ({LINUX: ()}, "non-empty tuple"),
        ({LINUX: (Wheel(TINY, "0" * 64), Wheel(TINY, "1" * 64))}, "twice"),
        (
            {LINUX: (spectra.NUMPY, Wheel("scipy-1.15.3-cp312-cp312-manylinux_2_17_x86_64.whl", "0" * 64))},
            "Pythons",
        ),
    ],
)
def test_a_manifest_with_wheels_that_cannot_be_is_refused(wheels, named):
    with pytest.raises(ValueError, match=named):
        Manifest(name="x", version=1, title="x", wheels=wheels)


def test_a_wheel_pin_must_be_a_wheel_file_and_a_sha256():
    with pytest.raises(ValueError, match="not a wheel"):
        Wheel("numpy-2.2.6.tar.gz", "0" * 64)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        Wheel(TINY, "0" * 63)


def test_the_numpy_app_published_offline_installs_and_runs_in_the_sandbox(
    signing_key, tmp_path, capsys, monkeypatch
):
    """End to end: the real pinned numpy wheel, published offline, installed and verified by the
    client, imported by the app through the real sandbox."""
    folder = wheel_folder()
    can_run_here()

    monkeypatch.setattr(wheels, "CACHE", tmp_path / "empty-cache")  # so the folder serves it

    call_command("publish_app", "spectra", "--find-links", str(folder))

    assert f"spectra v1 ({LINUX}): published" in capsys.readouterr().out
    version = AppVersion.objects.get(app__name="spectra")
    assert (version.platform, version.python) == (LINUX, "3.11")
    data = version.bundle.read()
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("tessera-app.json"))
    assert manifest["python"] == "3.11"
    assert manifest["wheels"] == [{"file": spectra.NUMPY.file, "sha256": spectra.NUMPY.sha256}]
    app_version = {
        "id": version.pk,
        "app": "spectra",
        "version": version.version,
        "platform": version.platform,
        "sha256": version.bundle_sha256,
        "signature": version.signature,
        "size": version.bundle_size,
    }
    entrypoint = AppCache(tmp_path / "apps").install(app_version, data, bytes(signing_key.verify_key))
    assert (entrypoint.parent / "site" / "numpy" / "__init__.py").is_file()
    assert (tmp_path / "empty-cache" / spectra.NUMPY.sha256 / spectra.NUMPY.file).is_file()

    job = {"seed": 5, "unit": 1, "matrices": 6, "size": 40, "bins": 20}
    slot = tmp_path / "slot"
    slot.mkdir()
    (slot / "input").write_text(json.dumps(job))
    limits = Limits(
        cpu_seconds=60,
        memory_bytes=spectra.MANIFEST.memory_bytes + 256 * MiB,
        file_bytes=64 * MiB,
        processes=16,
        wall_deadline=time.time() + 60,
    )
    process = AppProcess.start(entrypoint=entrypoint, slot=slot, limits=limits)
    outcome = process.wait(60)
    if outcome is None:
        process.kill("the test timed out")
    assert outcome is not None and outcome.status == "success", outcome.message
    output = json.loads((slot / "output").read_text())
    assert sum(output["counts"]) + output["outside"] == 6 * 40
    assert output["moment2"] == pytest.approx(41 / 40, rel=0.1)
    # The same unit computed here, with numpy imported from the folder the client unpacked.
    sys.path.insert(0, str(entrypoint.parent / "site"))
    try:
        here = spectra.compute(json.dumps(job).encode(), Checkpoint())
    finally:
        sys.path.remove(str(entrypoint.parent / "site"))
    assert spectra.compare(here, (slot / "output").read_bytes())
