"""The volunteer client's version, as its requests name it, against the project's minimum.

A Tessera client names itself in ``User-Agent`` (``tessera-client/0.2.0 …``). A project that
sets ``MIN_CLIENT_VERSION`` refuses host registration and the scheduler RPC to older clients,
and to any that does not say, with a message that says how to upgrade: BOINC's
``min_core_client_version``. A client could lie about its version; nothing rests on it but
which client the project has promised to speak to.
"""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from coordinator.core.errors import DomainError

USER_AGENT = re.compile(r"(?:^|\s)tessera-client/(\d{1,6}(?:\.\d{1,6}){0,3})(?![\d.])", re.ASCII)
VERSION = re.compile(r"\d{1,6}(?:\.\d{1,6}){0,3}", re.ASCII)
RETRY_AFTER_SECONDS = 3600  # an old client asks again after an hour, not at its usual pace


class ClientTooOld(DomainError):
    """The client is older than the project's minimum (HTTP 426 Upgrade Required)."""

    code = "client_too_old"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retry_after = RETRY_AFTER_SECONDS


def parse(version: str) -> tuple[int, ...]:
    """``"0.2"`` → ``(0, 2, 0, 0)``: numbers to compare, trailing zeros implied."""
    if not VERSION.fullmatch(version):
        raise ValueError(f"{version!r} is not a version like 0.2.0")
    numbers = tuple(int(part) for part in version.split("."))
    return numbers + (0,) * (4 - len(numbers))


def named_in(user_agent: str) -> str | None:
    """The version a ``User-Agent`` header names for the Tessera client, if it names one."""
    found = USER_AGENT.search(user_agent[:300])
    return found.group(1) if found else None


def refusal(user_agent: str, minimum: str) -> str | None:
    """Why a client with this ``User-Agent`` may not call, or ``None`` when it may."""
    if not minimum:
        return None
    version = named_in(user_agent)
    if version is not None and parse(version) >= parse(minimum):
        return None
    running = f"this one is {version}" if version else "this one does not say its version"
    return f"this project needs tessera-client {minimum} or later ({running}); upgrade it"


class CurrentClient(BasePermission):
    """Refuses calls from a client older than ``MIN_CLIENT_VERSION``, saying how to upgrade."""

    def has_permission(self, request: Request, view: object) -> bool:
        why = refusal(request.META.get("HTTP_USER_AGENT", ""), settings.TESSERA["MIN_CLIENT_VERSION"])
        if why is None:
            return True
        page = request.build_absolute_uri("/client")
        raise ClientTooOld(f"{why}: the command for your computer is on {page}")
