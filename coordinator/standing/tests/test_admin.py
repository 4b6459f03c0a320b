"""The admin shows each app version's platform, plan class, hosts running it and their speed."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from coordinator.standing.models import HostAppVersion
from coordinator.testing import CODE_SIGNING_KEY, make_app, make_host, make_units
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import AppVersion, PlanClass, Replica
from coordinator.work.selectors import plan_specs
from coordinator.work.services import register_app_version

pytestmark = pytest.mark.django_db


def admin_client() -> Client:
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "a long admin passphrase")
    client = Client()
    client.force_login(admin)
    return client


def test_versions_are_listed_with_their_hosts_and_measured_speed():
    app = make_app(name="lj")
    native = register_app_version(
        app=app,
        version=2,
        bundle=b"native",
        signing_key=CODE_SIGNING_KEY,
        platform="x86_64-pc-linux-gnu",
        runtime="native",
        plan_class="mt",
    )
    [unit] = make_units(app, 1, min_quorum=1, target_nresults=1)
    fast, slow = make_host()[0], make_host()[0]
    HostAppVersion.objects.create(
        host=fast, app_version=native, daily_quota=5, speed_flops=6e9, speed_samples=4
    )
    HostAppVersion.objects.create(
        host=slow, app_version=native, daily_quota=5, speed_flops=2e9, speed_samples=3
    )
    Replica.objects.filter(workunit=unit).update(
        state=ReplicaState.IN_PROGRESS,
        host=fast,
        volunteer=fast.volunteer,
        deadline=timezone.now() + timedelta(days=1),
        app_version=native,
    )

    page = admin_client().get("/admin/work/appversion/").content.decode()

    assert "x86_64-pc-linux-gnu" in page and '<td class="field-plan_class">mt</td>' in page
    assert '<td class="field-hosts_running">1</td>' in page
    assert '<td class="field-hosts_measured">2</td>' in page
    assert '<td class="field-measured_gflops">4.00</td>' in page
    assert AppVersion.objects.count() == 2


def test_plan_classes_are_edited_in_the_admin_and_take_effect():
    client = admin_client()
    cuda = PlanClass.objects.get(name="cuda")
    assert client.get(f"/admin/work/planclass/{cuda.pk}/change/").status_code == 200
    plan_specs()  # cached before the edit

    form = {
        "name": "cuda",
        "kind": "gpu",
        "description": "newer GPUs",
        "cpu_features": "[]",
        "min_cores": 1,
        "max_cores": 1,
        "gpu_vendor": "nvidia",
        "gpu_api": "cuda",
        "min_gpu_memory_bytes": 8 * 1024**3,
        "min_driver_version": "550",
        "min_compute_capability": "8.0",
        "gpu_speedup": 30,
        "cpu_per_gpu_task": 0.25,
    }
    reply = client.post(f"/admin/work/planclass/{cuda.pk}/change/", form)

    assert reply.status_code == 302
    assert plan_specs()["cuda"].min_compute_capability == "8.0"
    assert plan_specs()["cuda"].gpu_speedup == 30
