"""A scientist's batch page, and an image batch's picture growing as tiles validate."""

import base64
import struct

import pytest
from django.test import Client
from django.utils import timezone
from tessera_client.protocol import Report

from coordinator.core import keys
from coordinator.science.services import split_due_batches, submit_batch
from coordinator.testing import SignedHost, make_host, make_scientist
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Policy
from coordinator.work.publishing import publish_app
from coordinator.work.services import transition_due_units
from workunits import mandelbrot
from workunits.interface import Checkpoint

pytestmark = pytest.mark.django_db
PICTURE = {"width": 32, "height": 16, "tile": 16, "max_iterations": 30, "span": 3.0}


@pytest.fixture
def tiles():
    publish_app(name="mandelbrot", signing_key=keys.create_project_key(keys.project_key_path()))
    owner, _ = make_scientist("owner")
    batch = submit_batch(
        owner=owner,
        app_name="mandelbrot",
        name="tiles",
        parameters=PICTURE,
        policy=Policy(min_quorum=1, target_nresults=1),
    )
    split_due_batches(now=timezone.now())
    return owner, batch


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def crunch_one_tile() -> None:
    host = SignedHost(*make_host())
    task = host.rpc(tasks=1).json()["tasks"][0]
    output = mandelbrot.compute(base64.b64decode(task["input_inline"]), Checkpoint())
    host.upload(task["replica"], output)
    report = Report(replica=task["replica"], status="success", cpu_time=1, output=output, inline=False)
    assert host.rpc(reports=[report]).status_code == 200
    transition_due_units(now=timezone.now())
    assert validate_due_units(now=timezone.now()) == 1


def test_the_owner_sees_progress_and_the_picture_grows(tiles):
    owner, batch = tiles
    client = signed_in(owner)
    before = client.get(f"/batches/{batch.pk}/picture.png").content

    crunch_one_tile()

    page = client.get(f"/batches/{batch.pk}").content.decode()
    assert '<th scope="row">Validated</th><td class="num">1</td>' in page
    assert f'<img src="/batches/{batch.pk}/picture.png"' in page and 'http-equiv="refresh"' in page
    after = client.get(f"/batches/{batch.pk}/picture.png")
    assert after["Content-Type"] == "image/png" and after["Cache-Control"] == "no-store"
    assert struct.unpack(">II", after.content[16:24]) == (32, 16)
    assert after.content != before, "the validated tile is in the picture now"


def test_nobody_else_sees_a_batch(tiles):
    _, batch = tiles
    stranger, _ = make_scientist("stranger")
    for path in (f"/batches/{batch.pk}", f"/batches/{batch.pk}/picture.png"):
        assert signed_in(stranger).get(path).status_code == 404
        assert Client().get(path)["Location"].startswith("/signin")
    assert signed_in(tiles[0]).get("/batches/99999").status_code == 404
    assert signed_in(tiles[0]).get(f"/batches/{2**70}").status_code == 404
