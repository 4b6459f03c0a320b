"""Installing the volunteer client: the page with a command for each platform, and the wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from coordinator.core import client_wheel


def install_context(request: HttpRequest) -> dict[str, Any]:
    """The install commands the pages show: with the wheel's hash once it was built, else the
    checkout's ``pip install ./client`` and how to build the wheel."""
    offer = client_wheel.offer(request.build_absolute_uri("/"))
    requirement = offer["requirement"]
    if requirement is None:
        return {"client": offer, "install": "pip install ./client", "commands": []}
    quoted = f'"{requirement}"'
    commands = [
        ("pipx", "Linux and macOS, with pipx (recommended)", f"pipx install {quoted}"),
        ("pip", "Linux and macOS, with pip", f"python3 -m pip install --user {quoted}"),
        ("windows", "Windows", f"py -m pip install --user {quoted}"),
        (
            "venv",
            "In a virtual environment of its own",
            f"python3 -m venv tessera && tessera/bin/pip install {quoted}",
        ),
    ]
    return {"client": offer, "install": commands[0][2], "commands": commands}


def client_page(request: HttpRequest) -> HttpResponse:
    """/client: how to install the client on each platform, its version, hash and minimum."""
    return render(request, "web/client.html", {"nav": "client", **install_context(request)})


def client_wheel_file(request: HttpRequest, name: str) -> FileResponse:
    """The wheel that ``release.json`` names, and nothing else from its folder."""
    release = client_wheel.current()
    if release is None or name != release.wheel:
        raise Http404("no such client release")
    path = Path(settings.CLIENT_WHEEL_DIR) / release.wheel
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=release.wheel, content_type="application/zip"
    )
