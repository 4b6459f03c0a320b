"""A BOINC client's scheduler request, read into plain values (docs/boinc.md).

Only what Tessera uses is read, each value within bounds; anything else the client sends is
ignored, as BOINC's own scheduler ignores tags it does not know. See BOINC-PROTOCOL.md 1.4 for
what the client writes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from coordinator.boinc.xml import XmlRefused, integer, number, text

PLATFORM = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RESULT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
MAX_RESULTS = 500
MAX_OTHER_RESULTS = 1000
MAX_STDERR = 64 * 1024
GIB = 1024**3


@dataclass(frozen=True)
class ReportedResult:
    """One ``<result>`` the client reports."""

    name: str
    exit_status: int
    state: int
    cpu_time: float
    elapsed: float
    stderr: str = ""


@dataclass(frozen=True)
class BoincRequest:
    authenticator: str
    hostid: int
    rpc_seqno: int
    platforms: list[str]
    client_version: str
    work_seconds: float
    n_cpus: int
    memory_bytes: int
    flops: float
    host_cpid: str
    description: dict[str, Any] = field(default_factory=dict)  # Host fields
    results: list[ReportedResult] = field(default_factory=list)
    other_results: list[str] = field(default_factory=list)  # results the client still holds
    code_sign_key: str = ""  # the key the client has pinned, if any
    cross_project_id: str = ""  # the volunteer's id across BOINC projects, as the client knows it


def read_request(root: ET.Element) -> BoincRequest:
    """The values of a ``<scheduler_request>``; XmlRefused for anything out of bounds."""
    if root.tag != "scheduler_request":
        raise XmlRefused(f"expected <scheduler_request>, got <{root.tag}>")
    host = root.find("host_info")
    stats = root.find("time_stats")
    version = (
        ".".join(
            str(integer(root, f"core_client_{part}_version", low=0, high=10_000))
            for part in ("major", "minor")
        )
        + f".{integer(root, 'core_client_release', low=0, high=10_000)}"
    )
    return BoincRequest(
        authenticator=text(root, "authenticator", max_length=256),
        hostid=integer(root, "hostid", low=0, high=2**62),
        rpc_seqno=integer(root, "rpc_seqno", low=0, high=2**62),
        platforms=_platforms(root),
        client_version=version,
        work_seconds=number(root, "work_req_seconds", low=0, high=1e9),
        n_cpus=integer(host, "p_ncpus", default=1, low=1, high=100_000),
        memory_bytes=int(number(host, "m_nbytes", default=GIB, low=0, high=2**53)),
        flops=number(host, "p_fpops", low=0, high=1e15),
        host_cpid=text(host, "host_cpid", max_length=64),
        description=_description(host, stats),
        results=[_result(node) for node in _limited(root, "result", MAX_RESULTS)],
        other_results=[
            text(node, "name", max_length=255)
            for node in _limited(root.find("other_results"), "other_result", MAX_OTHER_RESULTS)
        ],
        code_sign_key=text(root, "code_sign_key", max_length=2048),
        cross_project_id=_cross_project_id(text(root, "cross_project_id", max_length=64)),
    )


def _cross_project_id(value: str) -> str:
    """32 hex characters, or "" for anything else (a client's own, never trusted further)."""
    return value.lower() if re.fullmatch(r"[0-9a-fA-F]{32}", value) else ""


def _limited(parent: ET.Element | None, tag: str, most: int) -> list[ET.Element]:
    found = parent.findall(tag) if parent is not None else []
    if len(found) > most:
        raise XmlRefused(f"at most {most} <{tag}> per request")
    return found


def _platforms(root: ET.Element) -> list[str]:
    names = [text(root, "platform_name", max_length=64)]
    names += [text(node, "name", max_length=64) for node in _limited(root, "alt_platform", 8)]
    for name in names:
        if not PLATFORM.match(name):
            raise XmlRefused(f"{name!r} is not a platform name")
    return list(dict.fromkeys(names))


def _description(host: ET.Element | None, stats: ET.Element | None) -> dict[str, Any]:
    """The Host fields of BOINC's host_info and time_stats."""
    fields: dict[str, Any] = {
        "os_name": text(host, "os_name", max_length=32),
        "os_version": text(host, "os_version", max_length=64),
        "cpu_vendor": text(host, "p_vendor", max_length=64),
        "cpu_model": text(host, "p_model", max_length=128),
        "cpu_features": sorted(
            {word.lower() for word in text(host, "p_features").split() if len(word) <= 32}
        )[:256],
        "disk_free_bytes": int(number(host, "d_free", low=0, high=2**53)),
        "on_fraction": number(stats, "on_frac", default=1.0, low=0, high=1),
        "active_fraction": number(stats, "active_frac", default=1.0, low=0, high=1),
    }
    return fields


def _result(node: ET.Element) -> ReportedResult:
    name = text(node, "name", max_length=255)
    if not RESULT_NAME.match(name):
        raise XmlRefused(f"{name!r} is not a result name")
    stderr = text(node, "stderr_out", max_length=10 * MAX_STDERR)[-MAX_STDERR:]
    return ReportedResult(
        name=name,
        exit_status=integer(node, "exit_status", low=-(2**31), high=2**31 - 1),
        state=integer(node, "state", low=0, high=100),
        cpu_time=number(node, "final_cpu_time", low=0, high=1e8),
        elapsed=number(node, "final_elapsed_time", low=0, high=1e8),
        stderr=stderr,
    )
