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
from collections.abc import Iterable
from dataclasses import dataclass

from django.core import signing

from coordinator.boinc.models import BoincAppFile
from coordinator.boinc.scheduler import BoincReply, result_name
from coordinator.boinc.xml import Writer
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


def upload_token(*, name: str, max_nbytes: int, replica_id: int, unit_id: int, expires: int) -> str:
    """Our upload certificate: signed with the SECRET_KEY, echoed back by the client in every
    upload (it never reads it), checked by the upload handler. It names the replica, its unit
    and the most bytes, and lasts until ``expires`` (a Unix time), so the handler needs no
    query: like the presigned policy a ``tessera`` client gets, it can only ever write this
    replica's upload object, and only the report reads that."""
    fields = {"n": name, "m": max_nbytes, "r": replica_id, "u": unit_id, "e": expires}
    return signing.dumps(fields, salt=UPLOAD_SALT)


def read_upload_token(token: str, *, now: float) -> dict:
    """The token's fields, or ``signing.BadSignature`` (``SignatureExpired`` once it has expired)."""
    fields = signing.loads(token, salt=UPLOAD_SALT)
    if not isinstance(fields, dict) or not isinstance(fields.get("e"), int):
        raise signing.BadSignature("not an upload certificate")
    if fields["e"] < now:
        raise signing.SignatureExpired("the upload certificate has expired")
    return fields


def upload_expiry(assignment: Assignment) -> int:
    """A late result is still welcome (until its unit is settled): its upload may come as long
    after the deadline as the task had before it."""
    return int(assignment.deadline.timestamp()) + int(assignment.unit.delay_bound)


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
    out = Writer().open("scheduler_reply")
    out.add(
        scheduler_version=SCHEDULER_VERSION,
        master_url=project.master_url,
        project_name=project.name,
        request_delay=delay,
        project_is_down=down,  # BOINC's "project is down for maintenance"
    )
    for text in messages:
        out.attributed("message", text, priority="low")
    if reply is not None:
        _standing(out, reply)
        _tasks(out, [*(reply.rpc.assignments if reply.rpc else []), *reply.resent], project)
        for name in reply.acks:
            out.open("result_ack").add(name=name).close("result_ack")
        for name in reply.aborts:
            out.open("result_abort").add(name=name).close("result_abort")
    if code_sign_key:  # only to a client without it, or with the key it replaces (keys.key_for_client)
        out.add(code_sign_key=code_sign_key, code_sign_key_signature=code_sign_key_signature or None)
    return out.close("scheduler_reply").render()


def _standing(out: Writer, reply: BoincReply) -> None:
    """The volunteer's and the host's credit, all a BOINC client knows of it."""
    host, credit = reply.host, reply.rpc.credit if reply.rpc else None
    out.add(
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


def _tasks(out: Writer, assignments: list[Assignment], project: Project) -> None:
    versions = {a.app_version.pk: a.app_version for a in assignments}
    files: dict[int, list[BoincAppFile]] = {}
    for row in BoincAppFile.objects.filter(app_version_id__in=versions):
        files.setdefault(row.app_version_id, []).append(row)
    for app in {v.app_id: v.app for v in versions.values()}.values():
        out.open("app").add(name=app.name, user_friendly_name=app.title or app.name).close("app")
    for version in versions.values():
        for row in files.get(version.pk, []):
            _app_file_info(out, row, project)
        _app_version(out, version, files.get(version.pk, []))
    for assignment in assignments:
        _task(out, assignment, project)


def _app_file_info(out: Writer, row: BoincAppFile, project: Project) -> None:
    out.open("file_info").add(
        name=row.name,
        url=f"{project.master_url}download/{row.name}",
        executable=True,
        nbytes=row.size,
        md5_cksum=row.md5,
        file_signature="\n" + row.signature,
    ).close("file_info")


def _app_version(out: Writer, version: AppVersion, files: list[BoincAppFile]) -> None:
    out.open("app_version").add(
        app_name=version.app.name,
        version_num=version_num(version),
        platform=version.platform,
        plan_class=plan_class(version) or None,
        api_version=API_VERSION,
    )
    for row in files:
        out.open("file_ref").add(
            file_name=row.name, open_name=row.open_name, main_program=row.main_program, copy_file=True
        ).close("file_ref")
    out.close("app_version")


def _task(out: Writer, assignment: Assignment, project: Project) -> None:
    """A task's input and output ``<file_info>``, its ``<workunit>`` and its ``<result>``."""
    unit, version = assignment.unit, assignment.app_version
    unit_name = UNSAFE.sub("_", unit.name)[:200]
    tin, tout = input_name(unit.pk), output_name(assignment.replica_id)
    out.open("file_info").add(
        name=tin, url=f"{project.master_url}download/{tin}", nbytes=unit.input_size
    ).close("file_info")
    _output_info(out, assignment, tout, project)
    fpops = max(float(unit.fpops_estimate), 1.0)
    out.open("workunit").add(
        name=unit_name,
        app_name=version.app.name,
        rsc_fpops_est=fpops,
        rsc_fpops_bound=fpops * 100,
        rsc_memory_bound=float(max(unit.memory_bytes, MIN_MEMORY_BOUND)),
        rsc_disk_bound=float(max(unit.disk_bytes, MIN_DISK_BOUND)),
    )
    out.open("file_ref").add(file_name=tin, open_name="input", copy_file=True).close("file_ref")
    out.close("workunit").open("result").add(
        name=result_name(unit_name, assignment.replica_id),
        wu_name=unit_name,
        report_deadline=int(assignment.deadline.timestamp()),
        platform=version.platform,
        version_num=version_num(version),
        plan_class=plan_class(version) or None,
    )
    out.open("file_ref").add(file_name=tout, open_name="output", copy_file=True).close("file_ref")
    out.close("result")


def _output_info(out: Writer, assignment: Assignment, tout: str, project: Project) -> None:
    """The output's ``<file_info>``: uploaded to our handler, with our upload token."""
    max_nbytes = assignment.app_version.max_output_bytes
    token = upload_token(
        name=tout,
        max_nbytes=max_nbytes,
        replica_id=assignment.replica_id,
        unit_id=assignment.unit.pk,
        expires=upload_expiry(assignment),
    )
    out.open("file_info").add(
        name=tout,
        generated_locally=True,
        upload_when_present=True,
        max_nbytes=max_nbytes,
        url=f"{project.master_url}file_upload_handler",
        xml_signature=token,
    ).close("file_info")
