"""`manage.py publish_app`: the bundle built from workunits/, signed, registered once."""

import base64
import io
import json
import zipfile

import pytest
from django.core.management import CommandError, call_command
from tessera_client.signing import bundle_message, signature_is_valid

import workunits
from coordinator.core import keys
from coordinator.core.errors import Conflict, InvalidInput, NotFound
from coordinator.work import bundles
from coordinator.work.models import App, AppVersion
from coordinator.work.publishing import publish_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def signing_key():
    return keys.create_project_key(keys.project_key_path())


def test_publishing_registers_a_signed_version_from_the_manifest(signing_key):
    published = publish_app(name="montecarlo_pi", signing_key=signing_key)

    version = published.version
    manifest = workunits.load("montecarlo_pi").MANIFEST
    app = App.objects.get(name="montecarlo_pi")
    assert published.created and version.version == manifest.version
    assert (app.title, app.compare_mode, version.max_output_bytes) == (manifest.title, "bitwise", 4096)
    message = bundle_message(
        app=app.name, version=version.version, platform="any", sha256=version.bundle_sha256
    )
    assert signature_is_valid(bytes(signing_key.verify_key), message, base64.b64decode(version.signature))
    names = zipfile.ZipFile(io.BytesIO(version.bundle.read())).namelist()
    assert {
        "main.py",
        "tessera-app.json",
        "workunits/runtime.py",
        "workunits/montecarlo_pi/__init__.py",
    } <= set(names)
    assert not [n for n in names if "tests/" in n or n.endswith(".pyc")]


def test_publishing_the_same_code_again_changes_nothing(signing_key):
    first = publish_app(name="montecarlo_pi", signing_key=signing_key)

    again = publish_app(name="montecarlo_pi", signing_key=signing_key)

    assert not again.created and again.version.pk == first.version.pk
    assert AppVersion.objects.count() == 1


def test_changed_code_under_a_published_version_is_refused(signing_key, monkeypatch):
    publish_app(name="montecarlo_pi", signing_key=signing_key)
    build = bundles.build_app_bundle
    monkeypatch.setattr(
        "coordinator.work.publishing.build_app_bundle", lambda module: build(module) + b"changed"
    )

    with pytest.raises(Conflict, match=r"raise MANIFEST\.version"):
        publish_app(name="montecarlo_pi", signing_key=signing_key)
    assert AppVersion.objects.count() == 1


def test_an_unknown_app_is_refused_and_nothing_is_made(signing_key):
    with pytest.raises(NotFound, match="there is no app 'nope'"):
        publish_app(name="nope", signing_key=signing_key)
    assert not App.objects.exists()


def test_the_command_says_what_it_published_and_never_prints_the_key(signing_key, capsys):
    call_command("publish_app", "montecarlo_pi")

    out = capsys.readouterr().out
    assert "montecarlo_pi v3: published" in out and keys.fingerprint(keys.public_key_b64(signing_key)) in out
    assert base64.b64encode(bytes(signing_key)).decode() not in out


def test_the_command_without_a_key_says_how_to_make_one():
    with pytest.raises(CommandError, match="keys create"):
        call_command("publish_app", "montecarlo_pi")


def test_the_bundle_manifest_names_the_generated_entrypoint():
    bundle = bundles.build_app_bundle(workunits.load("montecarlo_pi"))

    archive = zipfile.ZipFile(io.BytesIO(bundle))
    assert json.loads(archive.read("tessera-app.json")) == {"api": 1, "entrypoint": "main.py"}
    assert b"from workunits import montecarlo_pi as app" in archive.read("main.py")
    assert bundles.build_app_bundle(workunits.load("montecarlo_pi")) == bundle


def test_a_wasm_app_is_published_as_its_module_with_the_runtime(signing_key):
    published = publish_app(name="lennard_jones", signing_key=signing_key)

    version, app = published.version, App.objects.get(name="lennard_jones")
    assert (version.runtime, version.platform, app.compare_mode) == ("wasm", "any", "bitwise")
    archive = zipfile.ZipFile(io.BytesIO(version.bundle.read()))
    assert sorted(archive.namelist()) == ["lennard_jones.wasm", "tessera-app.json"]
    assert json.loads(archive.read("tessera-app.json"))["runtime"] == "wasm"
    assert not publish_app(name="lennard_jones", signing_key=signing_key).created


def test_a_wasm_module_with_a_foreign_import_is_not_published(signing_key, monkeypatch):
    import wasmtime

    foreign = wasmtime.wat2wasm('(module (import "env" "foo" (func)))')
    monkeypatch.setattr("workunits.wasm_build.build_app_module", lambda app: foreign)

    with pytest.raises(InvalidInput, match=r"env\.foo"):
        publish_app(name="lennard_jones", signing_key=signing_key)
    assert not App.objects.exists()


def test_a_wasm_app_with_native_platforms_gets_a_native_version_for_each(signing_key):
    assert workunits.load("lennard_jones").MANIFEST.native_platforms == (
        "x86_64-pc-linux-gnu",
        "aarch64-unknown-linux-gnu",
    )

    published = publish_app(name="lennard_jones", signing_key=signing_key)

    kinds = {(v.platform, v.runtime, v.plan_class) for v, created in published.versions if created}
    assert kinds == {
        ("any", "wasm", "cpu"),
        ("x86_64-pc-linux-gnu", "native", "cpu"),
        ("aarch64-unknown-linux-gnu", "native", "cpu"),
    }
    arm = AppVersion.objects.get(app__name="lennard_jones", platform="aarch64-unknown-linux-gnu")
    message = bundle_message(
        app="lennard_jones", version=arm.version, platform=arm.platform, sha256=arm.bundle_sha256
    )
    assert signature_is_valid(bytes(signing_key.verify_key), message, base64.b64decode(arm.signature))
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(arm.bundle.read())).read("tessera-app.json"))
    assert manifest == {"api": 1, "runtime": "native", "entrypoint": "bin/lennard_jones"}
    assert not publish_app(name="lennard_jones", signing_key=signing_key).created  # the same code again
