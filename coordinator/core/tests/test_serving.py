"""What a load balancer, a Prometheus server and a log collector see of a web process."""

import json
import os
import subprocess
import sys

import pytest
from django.test import Client
from prometheus_client.core import GaugeMetricFamily

from coordinator.core import metrics
from coordinator.testing import SignedHost, make_app, make_host, make_units

pytestmark = pytest.mark.django_db


def test_health_says_the_process_answers_and_readiness_checks_what_it_needs():
    assert Client().get("/healthz").json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "broker": "ok", "storage": "ok"}


def test_readiness_fails_with_the_reason_when_the_storage_is_gone(settings, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    settings.MEDIA_ROOT = tmp_path / "a-file" / "media"
    answer = Client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready" and "NotADirectoryError" in answer.json()["storage"]


def test_metrics_show_the_project_and_this_process(project_key_file):
    make_units(make_app(), 3)
    host = SignedHost(*make_host())
    assert len(host.rpc(tasks=2).json()["tasks"]) == 2

    text = Client().get("/metrics").content.decode()

    assert 'tessera_units{state="active"} 3.0' in text
    assert "tessera_hosts_active 1.0" in text
    assert "tessera_credit_grants_total 0.0" in text
    dispatched = next(
        line for line in text.splitlines() if line.startswith("tessera_replicas_dispatched_total")
    )
    assert float(dispatched.split()[-1]) >= 2
    assert "django_http_requests_total_by_method_total" in text
    assert 'tessera_queue_messages{kind="ready",queue="default"}' in text


def test_metrics_show_a_registered_source_once_and_core_adds_only_the_queues(monkeypatch):
    monkeypatch.setattr(metrics, "_SOURCES", [])

    def answers() -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("tessera_answer", "a figure an app publishes", value=42)]

    metrics.register_figures(answers)
    metrics.register_figures(answers)
    text = Client().get("/metrics").content.decode()

    published = [line for line in text.splitlines() if line.startswith("tessera_answer")]
    assert published == ["tessera_answer 42.0"]
    assert "tessera_units" not in text, "core counts no domain model by itself"
    assert "tessera_queue_messages" in text


def test_json_logs_are_one_object_a_line():
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('tessera.test').warning('hello %s', 'there')"
    )
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "coordinator.settings"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert (
        line["message"] == "hello there" and line["level"] == "WARNING" and line["logger"] == "tessera.test"
    )
    assert {"time", "process"} <= set(line)
