"""Schemathesis against the coordinator's own OpenAPI schema: every operation, with real
credentials and real objects, must answer without a 5xx and as the schema says (status code,
content type and body). ``TESSERA_FUZZ_EXAMPLES`` raises the budget for a longer run.

Requests go in-process to ``coordinator.wsgi``. Host requests are signed by a thin WSGI layer
(:class:`SigningApp`) over the exact path and body the coordinator will read, with a fresh
timestamp and nonce each time; schemathesis only marks which requests to sign. Generated ids,
tokens and keys are sometimes swapped for seeded real ones, so requests get past the 404s and
401s; one known-good request per operation makes sure every success answer is checked too.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coordinator.core import keys, objects
from coordinator.scheduler import uploads as scheduler_uploads
from coordinator.science.services import split_batch, submit_batch
from coordinator.testing import (
    PASSWORD,
    SignedHost,
    make_host,
    make_scientist,
    make_units,
    make_volunteer,
)
from coordinator.work.lifecycle import Policy
from coordinator.work.models import BatchState
from coordinator.work.publishing import publish_app
from coordinator.wsgi import application
from tests.fuzz_signing import SIGN_ME, Seeds, SigningApp, kept_connection

MAX_EXAMPLES = int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "50"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PI = {"seed": 3, "units": 3, "samples_per_unit": 100}

seeds = Seeds()
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", SigningApp(application, seeds))


# --- credentials ---------------------------------------------------------------------------


def sign_in(case: Any) -> None:
    """Put the credentials each operation's security scheme asks for where it asks for them,
    unless the case leaves them out on purpose. Done at call time: the coverage phase's cases
    are made when the tests are collected, before the database holds any account."""
    if case.headers is None:
        case.headers = {}
    if case.operation.schema.is_security_param_negated(case):
        return
    schemes = {
        name for requirement in case.operation.definition.raw.get("security", []) for name in requirement
    }
    if "scientistToken" in schemes:
        case.headers["Authorization"] = f"Bearer {seeds.scientist_token}"
    if "accountToken" in schemes:  # registration: the new key signs, with no host id yet
        case.headers["Authorization"] = f"Token {seeds.account_token}"
        case.headers["X-Tessera-Signature"] = SIGN_ME
    if "hostSignature" in schemes:
        case.headers["X-Tessera-Host"] = str(seeds.host_id)
        case.headers["X-Tessera-Signature"] = SIGN_ME


# --- real objects: generated ids, tokens and keys are sometimes swapped for seeded ones -----


def sometimes(value: Any, real: list[Any]) -> st.SearchStrategy:
    return st.one_of(st.just(value), st.sampled_from(real)) if real else st.just(value)


@schema.hook
def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy:
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {name: sometimes(value, seeds.ids.get(name, [])) for name, value in path_parameters.items()}
    )


@schema.hook
def flatmap_query(ctx: Any, query: dict[str, Any] | None) -> st.SearchStrategy:
    if not isinstance(query, dict) or "token" not in query:
        return st.just(query)
    return sometimes(query["token"], seeds.download_tokens).map(lambda token: {**query, "token": token})


@schema.hook
def flatmap_body(ctx: Any, body: Any) -> st.SearchStrategy:
    if not isinstance(body, dict):
        return st.just(body)
    label = ctx.operation.label
    fields: dict[str, st.SearchStrategy] = {name: st.just(value) for name, value in body.items()}
    if label == "POST /api/v1/volunteers/token" and {"username", "password"} <= set(body):
        real = {**body, "username": seeds.username, "password": seeds.password}
        return st.sampled_from([body, real])
    if label == "POST /api/v1/hosts" and "public_key" in body:
        fields["public_key"] = sometimes(body["public_key"], [seeds.new_public_key])
    elif label == "POST /api/v1/scheduler":
        if isinstance(body.get("reports"), list):
            fields["reports"] = st.just(body["reports"]).flatmap(reports_with_held_replicas)
        if isinstance(body.get("in_progress"), list):
            fields["in_progress"] = st.sampled_from([body["in_progress"], seeds.ids["replica_id"]])
    elif label == "POST /api/v1/objects/upload":
        for name in ("key", "token"):
            if name in body:
                fields[name] = sometimes(body[name], [seeds.upload_fields[name]])
    elif label == "POST /api/v1/batches":
        if "app" in body:
            fields["app"] = sometimes(body["app"], ["montecarlo_pi"])
        if "parameters" in body:
            fields["parameters"] = sometimes(body["parameters"], [PI])
    return st.fixed_dictionaries(fields)


def reports_with_held_replicas(reports: list[Any]) -> st.SearchStrategy:
    """Reports that sometimes name a replica the host holds, and carry an inline output whose
    hash and size match, so that some are accepted and go on to the validator."""

    def held(report: Any) -> st.SearchStrategy:
        if not isinstance(report, dict) or "replica" not in report:
            return st.just(report)
        named = sometimes(report["replica"], seeds.ids["replica_id"]).map(lambda r: {**report, "replica": r})
        return named.flatmap(lambda named: st.sampled_from([with_matching_output(named), named]))

    return st.tuples(*(held(report) for report in reports)).map(list)


def with_matching_output(report: dict[str, Any]) -> dict[str, Any]:
    """The report as a client that ran the replica sends it: an error carries no output; a
    success carries its output inline (the generated one, if base64) with its hash and size."""
    if report.get("status") != "success":
        return {k: v for k, v in report.items() if k not in ("output_inline", "output_sha256", "output_size")}
    try:
        output = base64.b64decode(report.get("output_inline", ""), validate=True)
    except (TypeError, ValueError):
        output = b""
    return {
        **report,
        "output_inline": base64.b64encode(output).decode(),
        "output_sha256": hashlib.sha256(output).hexdigest(),
        "output_size": len(output),
    }


# --- the world the requests land in ---------------------------------------------------------


@pytest.fixture
def world(db, monkeypatch) -> Iterator[Seeds]:
    """A published app, a scientist's batches, a volunteer whose host holds replicas."""
    # Rate limits would turn most of the budget into 429s; every scope gets a loose one.
    # DRF's throttles keep the rates they read at import, so their copy is replaced too.
    loose = dict.fromkeys(api_settings.DEFAULT_THROTTLE_RATES, "100000/minute")
    monkeypatch.setattr(api_settings, "DEFAULT_THROTTLE_RATES", loose)
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", loose)
    cache.clear()
    project_key = keys.create_project_key(keys.project_key_path())
    version = publish_app(name="montecarlo_pi", signing_key=project_key).version

    scientist, scientist_token = make_scientist()
    policy = Policy(min_quorum=1, target_nresults=1)
    running = submit_batch(
        owner=scientist, app_name="montecarlo_pi", name="running", parameters=PI, policy=policy
    )
    split_batch(batch_id=running.pk, now=timezone.now())
    done = submit_batch(owner=scientist, app_name="montecarlo_pi", name="done", parameters=PI, policy=policy)
    done.state, done.finished = BatchState.DONE, timezone.now()
    done.result.save("result.json", ContentFile(b'{"pi": 3.14}'))  # saves the batch too
    cancelled = submit_batch(
        owner=scientist, app_name="montecarlo_pi", name="off", parameters=PI, policy=policy
    )
    cancelled.state = BatchState.CANCELLED
    cancelled.save()

    volunteer, account_token = make_volunteer()
    host, key = make_host(volunteer, platform="linux-x86_64")
    claimed = SignedHost(host, key).rpc(tasks=3)
    assert claimed.status_code == 200, claimed.content
    held = [task["replica"] for task in claimed.json()["tasks"]]
    assert held, "the host must hold replicas for the scheduler and upload operations"
    big = make_units(version.app, 1, input_data=b"x" * 8192)[0]  # stored as a file, not inline
    download = objects.presigned_get(big.input_file.name, expires_in=3600)
    upload = scheduler_uploads.upload_policy(host=host, replica_id=held[0])

    seeds.fill(
        account_token=account_token,
        scientist_token=scientist_token,
        username=volunteer.user.get_username(),
        password=PASSWORD,
        host=host,
        host_key=key,
        ids={
            "batch_id": [running.pk, done.pk, cancelled.pk],
            "replica_id": held,
            "version_id": [version.pk],
            "volunteer_id": [volunteer.pk],
        },
        download_tokens=[download.split("token=", 1)[1]],
        upload_fields=dict(upload.fields),
    )
    with kept_connection():
        yield seeds
    seeds.clear()
    cache.clear()


# --- the fuzzing: every operation, generated requests ---------------------------------------


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_schema_says(case, world):
    sign_in(case)
    case.call_and_validate(checks=CHECKS)


# --- one known-good request per operation: every success answer is checked at least once ----


def at(**path_parameters: int) -> dict[str, Any]:
    return {"path_parameters": path_parameters}


def json_body(body: dict[str, Any]) -> dict[str, Any]:
    return {"body": body, "media_type": "application/json"}


def known_good(s: Seeds) -> dict[str, dict[str, Any]]:
    """For each operation, the keyword arguments of a case that must succeed."""
    running, done, _ = s.ids["batch_id"]
    replica = s.ids["replica_id"][0]
    host = {"public_key": s.new_public_key, "name": "laptop", "platform": "linux-x86_64", "n_cpus": 4}
    return {
        "GET /api/v1/app-versions/{version_id}/bundle": at(version_id=s.ids["version_id"][0]),
        "GET /api/v1/batches": {},
        "POST /api/v1/batches": json_body({"app": "montecarlo_pi", "name": "known good", "parameters": PI}),
        "GET /api/v1/batches/{batch_id}": at(batch_id=running),
        "POST /api/v1/batches/{batch_id}/cancel": at(batch_id=running),
        "GET /api/v1/batches/{batch_id}/failures": at(batch_id=running),
        "GET /api/v1/batches/{batch_id}/result": at(batch_id=done),
        "POST /api/v1/hosts": json_body({**host, "memory_bytes": 8 << 30}),
        "GET /api/v1/leaderboards/hosts": {},
        "GET /api/v1/leaderboards/teams": {},
        "GET /api/v1/leaderboards/volunteers": {},
        "GET /api/v1/objects/download": {"query": {"token": s.download_tokens[0]}},
        "POST /api/v1/objects/upload": {
            "body": {**s.upload_fields, "file": b"an output"},
            "media_type": "multipart/form-data",
        },
        "GET /api/v1/notices": {"query": {"after": 0}},
        "GET /api/v1/project": {},
        "POST /api/v1/replicas/{replica_id}/upload": at(replica_id=replica),
        "POST /api/v1/scheduler": json_body(
            {"reports": [], "work_request": {"tasks": 1, "seconds": 0}, "in_progress": s.ids["replica_id"]}
        ),
        "POST /api/v1/volunteers": json_body({"username": "newcomer", "password": PASSWORD}),
        "GET /api/v1/volunteers/{volunteer_id}/credit-history": at(volunteer_id=s.ids["volunteer_id"][0]),
        "POST /api/v1/volunteers/token": json_body({"username": s.username, "password": s.password}),
    }


@pytest.mark.parametrize("label", sorted(result.ok().label for result in schema.get_all_operations()))
def test_each_operation_succeeds_as_its_schema_says(label, world):
    requests = known_good(world)
    assert label in requests, f"{label} needs a known-good request in known_good()"
    case = schema.find_operation_by_label(label).Case(**requests[label])
    sign_in(case)
    response = case.call_and_validate(checks=CHECKS)
    assert 200 <= response.status_code < 300, (label, response.status_code, response.content[:300])
