"""Attaching this computer to a project: register a host key and pin the project's signing key.

Shared by ``tessera attach`` and the dashboard's attach form, so both check the same things:
the name is free, the address is not attached already, and the signing key is the one the
volunteer expects when they gave its fingerprint. Nothing is written unless the project
accepted the registration.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from tessera_client import hardware
from tessera_client.prefs import PreferenceStore
from tessera_client.protocol import HostKey, ProjectSession
from tessera_client.signing import b64decode, key_fingerprint
from tessera_client.state import DataDir, Project, StateError, check_name, project_name_for


class AttachRefused(StateError):
    """The attach cannot go ahead as asked; the message says why and what to do."""


@dataclass
class AttachRequest:
    """What the volunteer asked for; only ``url`` and ``token`` are required."""

    url: str
    token: str
    name: str | None = None
    host_name: str | None = None
    resource_share: float = 100.0
    fingerprint: str | None = None


def platform_name() -> str:
    """This computer's primary BOINC platform name, e.g. ``x86_64-pc-linux-gnu``."""
    return hardware.platforms()[0]


def describe_host(data: DataDir, suggested: dict[str, Any] | None) -> dict[str, Any]:
    """What this computer is, for the project it attaches to (:func:`hardware.describe`), under
    the preferences in force: the volunteer's own over the project's suggestions."""
    prefs = PreferenceStore(data.prefs_file).effective(suggested)
    return hardware.describe(
        data.root,
        limit_bytes=prefs.disk_max_gb * 1e9,
        used_bytes=hardware.bytes_under(data.root),
        use_gpus=prefs.use_gpus,
        native_apps=prefs.native_apps,
    )


def attach(data: DataDir, request: AttachRequest) -> tuple[Project, dict[str, Any]]:
    """Register with the project and keep it; returns the project and what it said of itself.
    Raises :class:`AttachRefused`, ``ProtocolError`` or a ``requests`` error."""
    url = request.url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise AttachRefused(f"{request.url!r} is not a project's address (http:// or https://)")
    if not 0 < request.resource_share <= 1_000_000:
        raise AttachRefused("a resource share is a positive number (BOINC's default is 100)")
    name = check_name(request.name or project_name_for(url))
    if any(p.name == name or p.url.rstrip("/") == url for p in data.projects()):
        raise AttachRefused(f"{url} is already attached as {name!r}; detach {name} first")
    key = HostKey.generate()
    with ProjectSession(url, key) as session:
        info = session.project_info()
        fingerprint = key_fingerprint(b64decode(info["code_signing_key"]))
        if request.fingerprint and request.fingerprint.strip() != fingerprint:
            raise AttachRefused(
                f"the project's code-signing key has fingerprint {fingerprint}, not {request.fingerprint}: "
                "not attaching (check the address, or ask the project which key is right)"
            )
        description = describe_host(data, info.get("suggested_preferences"))
        host_id = session.register(
            account_token=request.token,
            name=request.host_name or socket.gethostname()[:64] or "tessera-host",
            platform=platform_name(),
            n_cpus=description["n_cpus"],
            memory_bytes=description["memory_bytes"],
            flops=float(data.host_info().get("flops", 0.0)),
            description=description,
        )
    data.ensure()
    key.save(data.key_file(name))
    project = Project(
        name=name,
        url=url,
        host_id=host_id,
        code_signing_key=info["code_signing_key"],
        fingerprint=fingerprint,
        project_name=str(info.get("name", "")),
        resource_share=request.resource_share,
        suggested_preferences=info.get("suggested_preferences") or {},
        attached_at=time.time(),
    )
    data.save_project(project)
    return project, info
