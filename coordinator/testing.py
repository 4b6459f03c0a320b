"""One-line setup for tests: volunteers, hosts, apps and units, and a host that signs."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils import timezone
from nacl.signing import SigningKey
from tessera_client.protocol import HostKey, Report
from tessera_client.signing import sign_request

from coordinator.accounts.models import Host, Volunteer
from coordinator.accounts.services import create_volunteer
from coordinator.science.access import SCIENTISTS_GROUP
from coordinator.science.tokens import issue_scientist_token
from coordinator.work.lifecycle import Policy
from coordinator.work.models import App, WorkUnit
from coordinator.work.services import create_work_unit, register_app_version

_serial = itertools.count(1)
PASSWORD = "a long enough passphrase 42"
CODE_SIGNING_KEY = SigningKey(b"\x07" * 32)


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def make_volunteer(name: str | None = None) -> tuple[Volunteer, str]:
    return create_volunteer(
        username=name or f"volunteer{next(_serial)}", password=PASSWORD, now=timezone.now()
    )


def make_host(
    volunteer: Volunteer | None = None,
    *,
    memory_bytes: int = 8 << 30,
    established: bool = False,
    **fields: Any,
) -> tuple[Host, HostKey]:
    """A host; ``established`` makes it an old one that unrelated hosts often agreed with,
    so that it vouches for others and settles disputes (standing.services)."""
    volunteer = volunteer or make_volunteer()[0]
    key = HostKey.generate()
    host = Host.objects.create(
        volunteer=volunteer,
        public_key=key.public_key_b64,
        name=fields.pop("name", f"host{next(_serial)}"),
        platform=fields.pop("platform", "linux-x86_64"),
        n_cpus=fields.pop("n_cpus", 4),
        memory_bytes=memory_bytes,
        daily_quota=fields.pop("daily_quota", 1000),
        **fields,
    )
    if established:
        Host.objects.filter(pk=host.pk).update(
            created=timezone.now() - timedelta(days=30), independent_valid=100
        )
        host.refresh_from_db()
    return host, key


def make_scientist(name: str | None = None) -> tuple[Any, str]:
    """A staff user in the scientists group, and their API token."""
    user = get_user_model().objects.create_user(
        username=name or f"scientist{next(_serial)}", password=PASSWORD, is_staff=True
    )
    user.groups.add(Group.objects.get(name=SCIENTISTS_GROUP))
    return user, issue_scientist_token(user=user, now=timezone.now())


def make_app(name: str | None = None, *, max_output_bytes: int = 1024 * 1024, runtime: str = "python") -> App:
    """An app with one version for every platform, of ``runtime``."""
    app = App.objects.create(name=name or f"app{next(_serial)}")
    register_app_version(
        app=app,
        version=1,
        bundle=b"bundle of " + app.name.encode(),
        signing_key=CODE_SIGNING_KEY,
        max_output_bytes=max_output_bytes,
        runtime=runtime,
    )
    return app


def make_units(app: App, count: int, *, input_data: bytes = b"x", **options: Any) -> list[WorkUnit]:
    policy = Policy(**{k: options.pop(k) for k in list(options) if hasattr(Policy, k)})
    now = options.pop("now", None) or timezone.now()
    # A second of work at the speed assumed for a host that has not measured itself: any
    # delay bound a test sets leaves time for it (the scheduler sends only what can finish).
    options.setdefault("fpops_estimate", 1e9)
    return [
        create_work_unit(
            app=app,
            name=f"{app.name}-{next(_serial)}",
            input_data=input_data,
            policy=policy,
            now=now,
            **options,
        )
        for _ in range(count)
    ]


class SignedHost:
    """A host talking to the coordinator through Django's test client, signing like the real one."""

    def __init__(self, host: Host, key: HostKey, client: Client | None = None) -> None:
        self.host = host
        self.key = key
        self.client = client or Client()

    def headers(self, method: str, path: str, body: bytes, **overrides: Any) -> dict[str, Any]:
        signed = sign_request(self.key.signing_key, method=method, path=path, body=body, host_id=self.host.pk)
        signed.update({k: v for k, v in overrides.items() if v is not None})
        return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in signed.items()}

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        **overrides: Any,
    ):
        return self.client.generic(
            method, path, body, content_type=content_type, **self.headers(method, path, body, **overrides)
        )

    def rpc(
        self,
        *,
        reports: list[Report | dict] | None = None,
        tasks: int = 0,
        seconds: float = 0.0,
        in_progress: list[int] | None = None,
        host_info: dict[str, Any] | None = None,
    ):
        payload: dict[str, Any] = {
            "reports": [r.to_json() if isinstance(r, Report) else r for r in reports or []]
        }
        if tasks or seconds:
            payload["work_request"] = {"tasks": tasks, "seconds": seconds}
        if in_progress:
            payload["in_progress"] = in_progress
        if host_info is not None:
            payload["host_info"] = host_info
        return self.send("POST", "/api/v1/scheduler", json.dumps(payload).encode())

    def upload_policy(self, replica_id: int):
        return self.send("POST", f"/api/v1/replicas/{replica_id}/upload", b"{}")

    def upload(self, replica_id: int, data: bytes, *, policy: dict | None = None):
        """Upload as the client does: ask for the replica's policy, then POST the bytes to the
        storage it names (the coordinator's local endpoint here, or an S3 bucket)."""
        if policy is None:
            granted = self.upload_policy(replica_id)
            if granted.status_code != 200:
                return granted
            policy = granted.json()
        return post_object(self.client, policy, data)


def post_object(client: Client, policy: dict, data: bytes):
    """POST ``data`` under an upload policy: to the local endpoint through the test client,
    or to an S3 server over HTTP."""
    if policy["url"].startswith("/"):
        form = {**policy["fields"], "file": SimpleUploadedFile("output", data)}
        return client.post(policy["url"], form)
    import requests

    return requests.post(policy["url"], data=policy["fields"], files={"file": ("output", data)}, timeout=30)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """A clear refusal: the status, a JSON body ``{"error", "detail"}``, and the code if given."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body
