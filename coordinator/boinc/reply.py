"""The ``<scheduler_reply>`` a BOINC client reads (docs/boinc.md; BOINC-PROTOCOL.md 1.5).

Each task is an ``<app>``, the ``<file_info>`` of every file it needs (the app version's signed
files, its input, its output with our upload token), the ``<app_version>``, the ``<workunit>``
and the ``<result>``, every file copied into the slot (``copy_file``: our launcher reads plain
files). Names are one flat namespace per project: app files by app, version and platform,
inputs ``tin_<unit>``, outputs ``tout_<replica>``.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from django.core import signing

from coordinator.boinc.models import BoincAppFile
from coordinator.boinc.scheduler import BoincReply, result_name
from coordinator.boinc.xml import add, element, render
from coordinator.scheduler.dispatch import Assignment
from coordinator.work.models import AppVersion

UPLOAD_SALT = "tessera.boinc.upload"
SCHEDULER_VERSION = 720
API_VERSION = "7.20.0"
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MIN_DISK_BOUND = 100 * 1024 * 1024
MIN_MEMORY_BOUND = 256 * 1024 * 1024  # the client aborts a task whose working set passes it


@dataclass(frozen=True)
class Project:
    """The project as the reply names it."""

    name: str
    master_url: str  # ends in "/"; the scheduler, downloads and uploads live under it


def input_name(unit_id: int) -> str:
    return f"tin_{unit_id}"


def output_name(replica_id: int) -> str:
    return f"tout_{replica_id}"


def upload_token(*, name: str, max_nbytes: int, replica_id: int) -> str:
    """Our upload certificate: signed with the SECRET_KEY, echoed back by the client in every
    upload (it never reads it), checked by the upload handler."""
    return signing.dumps({"n": name, "m": max_nbytes, "r": replica_id}, salt=UPLOAD_SALT)


def read_upload_token(token: str) -> dict:
    """The token's fields, or ``signing.BadSignature``."""
    return signing.loads(token, salt=UPLOAD_SALT)


def version_num(version: AppVersion) -> int:
    """BOINC shows version_num / 100: our version 4 is "4.00"."""
    return version.version * 100


def plan_class(version: AppVersion) -> str:
    return "" if version.plan_class == "cpu" else version.plan_class


def render_reply(
    reply: BoincReply | None,
    *,
    project: Project,
    delay: int,
    messages: Iterable[str] = (),
    code_sign_key: str = "",
    code_sign_key_signature: str = "",
    down: bool = False,
) -> bytes:
    """The reply; ``reply`` None for a request refused before it reached a host (the
    ``messages`` say why)."""
    root = element(
        "scheduler_reply",
        scheduler_version=SCHEDULER_VERSION,
        master_url=project.master_url,
        project_name=project.name,
        request_delay=delay,
        project_is_down=down,  # BOINC's "project is down for maintenance"
    )
    for text in messages:
        note = ET.SubElement(root, "message", priority="low")
        note.text = text
    if reply is not None:
        _standing(root, reply)
        _tasks(root, [*(reply.rpc.assignments if reply.rpc else []), *reply.resent], project)
        for name in reply.acks:
            root.append(element("result_ack", name=name))
        for name in reply.aborts:
            root.append(element("result_abort", name=name))
    if code_sign_key:  # only to a client without it, or with the key it replaces (keys.key_for_client)
        add(root, code_sign_key=code_sign_key, code_sign_key_signature=code_sign_key_signature or None)
    return render(root)


def _standing(root: ET.Element, reply: BoincReply) -> None:
    """The volunteer's and the host's credit, all a BOINC client knows of it."""
    host, credit = reply.host, reply.rpc.credit if reply.rpc else None
    add(
        root,
        userid=host.volunteer_id,
        user_name=host.volunteer.user.get_username(),
        user_total_credit=float(credit.volunteer_total) if credit else 0.0,
        user_expavg_credit=float(credit.volunteer_rac) if credit else 0.0,
        host_total_credit=float(credit.host_total) if credit else 0.0,
        host_expavg_credit=float(credit.host_rac) if credit else 0.0,
        hostid=host.pk if reply.created else None,  # only when the host is new: the client resets its seqno
        cross_project_id=host.volunteer.cross_project_id or None,
        email_hash=_email_hash(host.volunteer.user.email) or None,
    )


def _email_hash(email: str) -> str:
    """BOINC's email_hash: the MD5 of the lowercased address, for the client's account managers."""
    address = email.strip().lower()
    return hashlib.md5(address.encode(), usedforsecurity=False).hexdigest() if address else ""


def _tasks(root: ET.Element, assignments: list[Assignment], project: Project) -> None:
    versions = {a.app_version.pk: a.app_version for a in assignments}
    files: dict[int, list[BoincAppFile]] = {}
    for row in BoincAppFile.objects.filter(app_version_id__in=versions):
        files.setdefault(row.app_version_id, []).append(row)
    for app in {v.app_id: v.app for v in versions.values()}.values():
        root.append(element("app", name=app.name, user_friendly_name=app.title or app.name))
    for version in versions.values():
        for row in files.get(version.pk, []):
            root.append(_app_file_info(row, project))
        root.append(_app_version(version, files.get(version.pk, [])))
    for assignment in assignments:
        _task(root, assignment, project)


def _app_file_info(row: BoincAppFile, project: Project) -> ET.Element:
    info = element(
        "file_info",
        name=row.name,
        url=f"{project.master_url}download/{row.name}",
        executable=True,
        nbytes=row.size,
        md5_cksum=row.md5,
    )
    return add(info, file_signature="\n" + row.signature)


def _app_version(version: AppVersion, files: list[BoincAppFile]) -> ET.Element:
    refs = [
        element(
            "file_ref",
            file_name=row.name,
            open_name=row.open_name,
            main_program=row.main_program,
            copy_file=True,
        )
        for row in files
    ]
    return element(
        "app_version",
        *refs,
        app_name=version.app.name,
        version_num=version_num(version),
        platform=version.platform,
        plan_class=plan_class(version) or None,
        api_version=API_VERSION,
    )


def _task(root: ET.Element, assignment: Assignment, project: Project) -> None:
    unit, version = assignment.unit, assignment.app_version
    name = result_name(UNSAFE.sub("_", unit.name)[:200], assignment.replica_id)
    tin, tout = input_name(unit.pk), output_name(assignment.replica_id)
    max_nbytes = version.max_output_bytes
    root.append(
        element("file_info", name=tin, url=f"{project.master_url}download/{tin}", nbytes=unit.input_size)
    )
    output = element(
        "file_info",
        name=tout,
        generated_locally=True,
        upload_when_present=True,
        max_nbytes=max_nbytes,
        url=f"{project.master_url}file_upload_handler",
    )
    root.append(
        add(
            output,
            xml_signature=upload_token(name=tout, max_nbytes=max_nbytes, replica_id=assignment.replica_id),
        )
    )
    fpops = max(float(unit.fpops_estimate), 1.0)
    root.append(
        element(
            "workunit",
            element("file_ref", file_name=tin, open_name="input", copy_file=True),
            name=UNSAFE.sub("_", unit.name)[:200],
            app_name=version.app.name,
            rsc_fpops_est=fpops,
            rsc_fpops_bound=fpops * 100,
            rsc_memory_bound=float(max(unit.memory_bytes, MIN_MEMORY_BOUND)),
            rsc_disk_bound=float(max(unit.disk_bytes, MIN_DISK_BOUND)),
        )
    )
    root.append(
        element(
            "result",
            element("file_ref", file_name=tout, open_name="output", copy_file=True),
            name=name,
            wu_name=UNSAFE.sub("_", unit.name)[:200],
            report_deadline=int(assignment.deadline.timestamp()),
            platform=version.platform,
            version_num=version_num(version),
            plan_class=plan_class(version) or None,
        )
    )
