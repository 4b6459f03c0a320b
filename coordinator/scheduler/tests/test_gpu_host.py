"""On a machine with a GPU: the client's own detection describes it, and the scheduler sends
that host the GPU version of an app. Elsewhere it skips, saying why (the parsers are tested on
the vendors' real output formats in client/tests/test_hardware.py)."""

from __future__ import annotations

import shutil

import pytest
from tessera_client import gpus, hardware

from coordinator.testing import CODE_SIGNING_KEY, SignedHost, make_app, make_host, make_units
from coordinator.work.services import register_app_version

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        shutil.which("nvidia-smi") is None,
        reason="no NVIDIA GPU here (nvidia-smi is not on PATH): the GPU version's dispatch to a "
        "detected GPU runs only on a machine with one",
    ),
]


def test_a_detected_nvidia_gpu_gets_the_cuda_version():
    found = [gpu.to_json() for gpu in gpus.detect() if gpu.vendor == "nvidia"]
    assert found, "nvidia-smi is installed but reported no GPU"
    app = make_app()
    cuda = register_app_version(
        app=app,
        version=2,
        bundle=b"cuda build",
        signing_key=CODE_SIGNING_KEY,
        platform=hardware.platforms()[0],
        runtime="native",
        plan_class="cuda",
    )
    make_units(app, 2, min_quorum=1, target_nresults=1)
    host = SignedHost(
        *make_host(platforms=hardware.platforms(), runtimes=["python", "wasm", "native"], flops=1e9)
    )

    assert host.rpc(host_info={"gpus": found, "use_gpus": True}).status_code == 200
    [task] = host.rpc(tasks=1).json()["tasks"]

    assert task["app_version"]["id"] == cuda.pk
    assert task["app_version"]["gpu"]["vendor"] == "nvidia"
