"""The OpenAPI schema and the embedded runtime."""

import importlib
import time

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from nacl.signing import SigningKey
from tessera_client.signing import b64decode, key_fingerprint

from coordinator.core import keys
from coordinator.core.periodic import EmbeddedRuntime
from coordinator.testing import make_app
from coordinator.work.models import Replica, WorkUnit

API_PATHS = {
    "/api/v1/volunteers": {"post"},
    "/api/v1/volunteers/token": {"post"},
    "/api/v1/hosts": {"post"},
    "/api/v1/scheduler": {"post"},
    "/api/v1/replicas/{replica_id}/upload": {"post"},
    "/api/v1/objects/download": {"get"},
    "/api/v1/objects/upload": {"post"},
    "/api/v1/app-versions/{version_id}/bundle": {"get"},
    "/api/v1/leaderboards/volunteers": {"get"},
    "/api/v1/leaderboards/teams": {"get"},
    "/api/v1/leaderboards/hosts": {"get"},
    "/api/v1/volunteers/{volunteer_id}/credit-history": {"get"},
    "/api/v1/notices": {"get"},
    "/api/v1/project": {"get"},
    "/api/v1/batches": {"get", "post"},
    "/api/v1/batches/{batch_id}": {"get"},
    "/api/v1/batches/{batch_id}/cancel": {"post"},
    "/api/v1/batches/{batch_id}/result": {"get"},
    "/api/v1/batches/{batch_id}/failures": {"get"},
}

BODILESS = {
    "/api/v1/batches/{batch_id}/cancel",
    "/api/v1/replicas/{replica_id}/upload",
}  # the path says it all


def test_the_schema_validates_and_describes_every_endpoint(tmp_path):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())

    paths = {path: set(ops) - {"parameters"} for path, ops in schema["paths"].items()}
    assert paths == API_PATHS
    for path, methods in API_PATHS.items():
        for method in methods:
            operation = schema["paths"][path][method]
            assert {"200", "201", "204"} & set(operation["responses"]), f"{method} {path} has no success"
            if method in {"post", "put"} and path not in BODILESS:
                assert operation["requestBody"]["content"], f"{method} {path} has no request schema"
    assert {"accountToken", "hostSignature", "scientistToken"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.django_db
def test_the_docs_page_is_served():
    assert Client().get("/api/docs/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_embedded_runtime_runs_the_sweeps_by_itself():
    app = make_app()
    unit = WorkUnit.objects.create(
        app=app,
        name="due",
        input_inline=b"x",
        input_sha256="0" * 64,
        input_size=1,
        transition_time=timezone.now(),
    )
    runtime = EmbeddedRuntime(interval=0.2).start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not Replica.objects.filter(workunit=unit).exists():
            time.sleep(0.1)
    finally:
        runtime.stop()

    assert Replica.objects.filter(workunit=unit).count() == 2


def test_the_project_endpoint_offers_the_code_signing_key_to_pin(settings):
    settings.SUGGESTED_PREFERENCES = {"work_buf_hours": 2}
    public = keys.public_key_b64(keys.create_project_key(keys.project_key_path()))

    info = Client().get("/api/v1/project").json()

    assert info["code_signing_key"] == public
    assert info["fingerprint"] == key_fingerprint(b64decode(public))
    assert info["suggested_preferences"] == {"work_buf_hours": 2}
    assert info["protocol"] == 2


def test_the_project_endpoint_can_serve_the_public_key_without_the_private_one(settings):
    settings.PROJECT_PUBLIC_KEY = keys.public_key_b64(SigningKey.generate())

    assert Client().get("/api/v1/project").json()["code_signing_key"] == settings.PROJECT_PUBLIC_KEY


def test_without_a_signing_key_the_project_endpoint_says_so():
    reply = Client().get("/api/v1/project")

    assert reply.status_code == 503
    assert reply.json()["error"] == "unavailable"
    assert "keys create" in reply.json()["detail"]


def test_a_worker_builds_the_url_resolvers_reverse_tables_when_it_loads_the_wsgi_application():
    from django.urls import clear_url_caches, get_resolver
    from django.utils.translation import get_language

    clear_url_caches()
    assert get_language() not in get_resolver()._reverse_dict
    import coordinator.wsgi

    importlib.reload(coordinator.wsgi)
    assert get_language() in get_resolver()._reverse_dict
