"""The BOINC scheduler endpoint (docs/boinc.md): a stock client's request, through the same
services as ours, answered as BOINC's client reads it; hostile input refused with a message."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from coordinator.accounts.models import Host
from coordinator.boinc import crypt, keys
from coordinator.boinc import reply as reply_module
from coordinator.boinc.models import BoincAppFile, BoincHost
from coordinator.boinc.reply import read_upload_token
from coordinator.boinc.tests.conftest import CROSS_PROJECT_ID, X86, post, read, request_xml
from coordinator.boinc.views import BAD_KEY
from coordinator.scheduler import dispatch as scheduler_dispatch
from coordinator.scheduler.dispatch import WorkRequest, claim_work
from coordinator.standing.models import HostAppReputation
from coordinator.standing.reputation import TRUST_AFTER_CONSECUTIVE_VALID
from coordinator.testing import make_host, make_units
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica

pytestmark = pytest.mark.django_db


def test_a_first_request_makes_a_bearer_host_and_gets_signed_work(client: Client, boinc_app, boinc_volunteer):
    [unit] = make_units(boinc_app, 1, min_quorum=1, target_nresults=1)

    reply = read(post(client, request_xml(boinc_volunteer.key, work_seconds=3600)))

    host = Host.objects.get(pk=int(reply.findtext("hostid")))
    assert host.bearer and host.runtimes == ["boinc"] and host.platform == X86
    assert (host.on_fraction, host.active_fraction, host.n_cpus) == (0.95, 0.9, 4)
    assert BoincHost.objects.get(host=host).host_cpid == "0123456789abcdef0123456789abcdef"
    assert reply.findtext("project_name") and reply.findtext("master_url") == "http://testserver/boinc/"
    host.volunteer.refresh_from_db()
    assert reply.findtext("cross_project_id") == host.volunteer.cross_project_id == CROSS_PROJECT_ID
    [version] = reply.findall("app_version")
    assert (version.findtext("app_name"), version.findtext("version_num")) == (boinc_app.name, "100")
    refs = {ref.findtext("open_name"): ref for ref in version.findall("file_ref")}
    assert (
        set(refs) == {"tessera_launcher", "tessera_app"}
        and refs["tessera_launcher"].find("main_program") is not None
    )
    n, e = crypt.parse_public_key_text(reply.findtext("code_sign_key"))
    infos = {info.findtext("name"): info for info in reply.findall("file_info")}
    for row in BoincAppFile.objects.filter(app_version__app=boinc_app):
        signature = infos[row.name].findtext("file_signature").strip() + "\n"
        data = client.get(f"/boinc/download/{row.name}").getvalue()
        assert crypt.verify_file_bytes(n, e, data, signature), "every app file is signed with the BOINC key"
    [result] = reply.findall("result")
    replica = Replica.objects.get(workunit=unit)
    assert result.findtext("name") == f"{unit.name}_r{replica.pk}" and replica.host == host
    assert result.findtext("version_num") == "100" and result.findtext("platform") == X86
    output = infos[f"tout_{replica.pk}"]
    token = read_upload_token(output.findtext("xml_signature"), now=time.time())
    assert token == {
        "n": f"tout_{replica.pk}",
        "m": replica.app_version.max_output_bytes,
        "r": replica.pk,
        "u": unit.pk,
        "e": int(replica.deadline.timestamp()) + unit.delay_bound,  # a late result may still go up
    }
    assert "file_upload_handler" in output.findtext("url") and output.findtext("max_nbytes")
    downloaded = client.get(f"/boinc/download/tin_{unit.pk}")
    assert downloaded.content == b"x" and int(infos[f"tin_{unit.pk}"].findtext("nbytes")) == 1


def test_the_code_signing_key_goes_only_to_a_client_without_it_or_with_the_one_it_replaces(
    client: Client, boinc_app, boinc_volunteer
):
    current = keys.public_text()
    assert (
        read(post(client, request_xml(boinc_volunteer.key, code_sign_key=current))).find("code_sign_key")
        is None
    )

    old = current
    new_key = keys.rotate_key()
    rotated = read(post(client, request_xml(boinc_volunteer.key, code_sign_key=old)))

    assert rotated.findtext("code_sign_key").split() == crypt.public_key_text(new_key).split()
    n, e = crypt.parse_public_key_text(old)
    signature = rotated.findtext("code_sign_key_signature").strip() + "\n"
    assert crypt.verify_string(n, e, crypt.public_key_text(new_key).strip(), signature)


def test_a_known_host_is_found_by_its_id_and_a_copied_client_becomes_a_new_host(
    client: Client, boinc_app, boinc_volunteer
):
    first = read(post(client, request_xml(boinc_volunteer.key, seqno=5)))
    hostid = int(first.findtext("hostid"))

    restarted = read(post(client, request_xml(boinc_volunteer.key, hostid=hostid, seqno=0)))
    again = read(post(client, request_xml(boinc_volunteer.key, hostid=hostid, seqno=6)))
    copied = read(post(client, request_xml(boinc_volunteer.key, hostid=hostid, seqno=2)))

    assert restarted.find("hostid") is None, "a client counts from 0 again once it has its hostid"

    assert again.find("hostid") is None, "hostid is sent only for a new host"
    assert int(copied.findtext("hostid")) != hostid
    assert Host.objects.filter(bearer=True).count() == 2


def test_a_wrong_key_gets_our_message_and_changes_nothing(client: Client, boinc_app):
    reply = read(post(client, request_xml("0" * 32, work_seconds=100)))

    assert [m.text for m in reply.findall("message")] == [BAD_KEY]
    assert int(reply.findtext("request_delay")) >= 600
    assert not Host.objects.exists()


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r>&b;</r>', "DTD"),
        (b"<scheduler_request>" + b"<x>" * 100 + b"</x>" * 100 + b"</scheduler_request>", "nests deeper"),
        (b"<scheduler_request><authenticator>k", "not well-formed"),
        (b"<scheduler_request>" + b" " * (4 * 1024 * 1024 + 1) + b"</scheduler_request>", "over"),
        (b"<other_root/>", "expected <scheduler_request>"),
        (request_xml("k").replace(b"<p_ncpus>4<", b"<p_ncpus>-4<"), "p_ncpus"),
        (
            request_xml("k").replace(b"<work_req_seconds>0.000000<", b"<work_req_seconds>nan<"),
            "work_req_seconds",
        ),
        (request_xml("k").replace(X86.encode(), b"../../etc"), "platform"),
    ],
    ids=["entities", "deep", "truncated", "oversized", "root", "negative", "nan", "platform"],
)
def test_hostile_xml_gets_a_clear_message_and_changes_nothing(client: Client, boinc_volunteer, body, said):
    reply = read(post(client, body))

    [message] = [m.text for m in reply.findall("message")]
    assert said in message
    assert not Host.objects.exists()


def report(replica: Replica, name: str, *, exit_status: int = 0, state: int = 5) -> str:
    return f"""<result>
        <name>{name}</name>
        <final_cpu_time>12.5</final_cpu_time>
        <final_elapsed_time>13.0</final_elapsed_time>
        <exit_status>{exit_status}</exit_status>
        <state>{state}</state>
        <platform>{X86}</platform>
        <version_num>100</version_num>
        <stderr_out><core_client_version>7.20.5</core_client_version><![CDATA[it ran]]></stderr_out>
        <file_info><name>tout_{replica.pk}</name><nbytes>4</nbytes></file_info>
    </result>"""


def upload(
    client: Client, name: str, token: str, data: bytes, *, offset: int = 0, whole: bytes | None = None
):
    """An upload of ``data`` from ``offset`` of the file ``whole`` (``data`` itself by default)."""
    whole = data if whole is None else whole
    header = (
        "<data_server_request>\n<core_client_major_version>7</core_client_major_version>\n<file_upload>\n"
        f"<file_info>\n<name>{name}</name>\n<xml_signature>\n{token}\n</xml_signature>\n"
        f"<max_nbytes>100000</max_nbytes>\n</file_info>\n<nbytes>{len(whole)}</nbytes>\n"
        f"<md5_cksum>{hashlib.md5(whole).hexdigest()}</md5_cksum>\n"
        f"<offset>{offset}</offset>\n<data>\n"
    )
    body = header.encode() + data
    return read(
        client.post("/boinc/file_upload_handler", data=body, content_type="application/x-www-form-urlencoded")
    )


def test_an_uploaded_output_is_reported_acked_and_recorded_as_ours_would_be(
    client: Client, boinc_app, boinc_volunteer
):
    make_units(boinc_app, 1, min_quorum=1, target_nresults=1)
    first = read(post(client, request_xml(boinc_volunteer.key, work_seconds=3600)))
    hostid, [result] = int(first.findtext("hostid")), first.findall("result")
    replica = Replica.objects.get(host_id=hostid)
    token = next(
        i for i in first.findall("file_info") if i.findtext("name") == f"tout_{replica.pk}"
    ).findtext("xml_signature")
    size = read(
        client.post(
            "/boinc/file_upload_handler",
            data=f"<data_server_request><get_file_size>tout_{replica.pk}</get_file_size></data_server_request>",
            content_type="application/x-www-form-urlencoded",
        )
    )
    assert (size.findtext("status"), size.findtext("file_size")) == ("0", "0")
    assert upload(client, f"tout_{replica.pk}", token, b"do", whole=b"done").findtext("status") == "1", (
        "cut short: resume"
    )
    assert (
        upload(client, f"tout_{replica.pk}", token, b"ne", offset=2, whole=b"done").findtext("status") == "0"
    )

    reply = read(
        post(
            client,
            request_xml(
                boinc_volunteer.key, hostid=hostid, seqno=2, results=report(replica, result.findtext("name"))
            ),
        )
    )

    assert [ack.findtext("name") for ack in reply.findall("result_ack")] == [result.findtext("name")]
    replica.refresh_from_db()
    assert replica.output_sha256 == hashlib.sha256(b"done").hexdigest() and replica.cpu_time == 12.5
    again = read(
        post(
            client,
            request_xml(
                boinc_volunteer.key, hostid=hostid, seqno=3, results=report(replica, result.findtext("name"))
            ),
        )
    )
    assert len(again.findall("result_ack")) == 1, "a repeated report is acked again, never refused"


def test_uploads_with_a_forged_or_borrowed_token_or_over_the_limit_are_refused(
    client: Client, boinc_app, boinc_volunteer
):
    make_units(boinc_app, 2, min_quorum=1, target_nresults=1)
    reply = read(post(client, request_xml(boinc_volunteer.key, work_seconds=3600)))
    tokens = {
        i.findtext("name"): i.findtext("xml_signature")
        for i in reply.findall("file_info")
        if i.find("xml_signature") is not None
    }
    (mine, token), (other, _) = sorted(tokens.items())

    fields = read_upload_token(token, now=time.time())
    expired = reply_module.upload_token(
        name=mine,
        max_nbytes=fields["m"],
        replica_id=fields["r"],
        unit_id=fields["u"],
        expires=int(time.time()) - 1,
    )

    forged = upload(client, mine, token[:-2] + "xx", b"data")
    borrowed = upload(client, other, token, b"data")
    too_big = upload(client, mine, token, b"x", whole=b"x" * (2 * 1024 * 1024))  # the app allows 1 MiB
    too_late = upload(client, mine, expired, b"data")

    assert [r.findtext("status") for r in (forged, borrowed, too_big, too_late)] == ["-1"] * 4
    assert "certificate" in forged.findtext("message") and "limit" in too_big.findtext("message")
    assert "expired" in too_late.findtext("message")
    assert not list((keys.key_path().parent / "uploads").glob("*"))
    assert not list(Path(settings.MEDIA_ROOT).rglob("uploads/*/*")), "nothing reached the storage"


def test_a_result_the_client_lost_is_sent_again_and_one_called_off_is_aborted(
    client: Client, boinc_app, boinc_volunteer
):
    make_units(boinc_app, 1, min_quorum=1, target_nresults=1)
    first = read(post(client, request_xml(boinc_volunteer.key, work_seconds=3600)))
    hostid, name = int(first.findtext("hostid")), first.find("result").findtext("name")

    lost = read(post(client, request_xml(boinc_volunteer.key, hostid=hostid, seqno=2)))
    held = read(post(client, request_xml(boinc_volunteer.key, hostid=hostid, seqno=3, other_results=(name,))))

    assert [r.findtext("name") for r in lost.findall("result")] == [name]
    assert held.findall("result") == []
    Replica.objects.filter(host_id=hostid).update(state=ReplicaState.OVER, outcome="didnt_need")
    called_off = read(
        post(client, request_xml(boinc_volunteer.key, hostid=hostid, seqno=4, other_results=(name,)))
    )
    assert [r.findtext("name") for r in called_off.findall("result_abort")] == [name]


def test_a_bearer_host_is_never_trusted_with_a_unit_alone(boinc_app, monkeypatch):
    host, _ = make_host(established=True, bearer=True, runtimes=["boinc"], platform=X86, platforms=[X86])
    HostAppReputation.objects.create(
        host=host, app=boinc_app, consecutive_valid=TRUST_AFTER_CONSECUTIVE_VALID, valid=50
    )
    monkeypatch.setattr(scheduler_dispatch, "draw", lambda: 0.99)  # a keyed host would go alone
    make_units(boinc_app, 3, min_quorum=2, target_nresults=2)

    assigned = claim_work(host=host, request=WorkRequest(tasks=3), now=timezone.now() + timedelta(seconds=1))

    assert len(assigned) == 3
    assert not Replica.objects.filter(host=host, trusted_single=True).exists()


def test_down_for_maintenance_both_clients_are_told_to_come_back_later(
    client: Client, boinc_volunteer, settings
):
    from coordinator.testing import SignedHost

    settings.TESSERA = {
        **settings.TESSERA,
        "MAINTENANCE": "moving to a new database",
        "MAINTENANCE_RETRY_SECONDS": 900,
    }
    ours = SignedHost(*make_host())

    reply = read(post(client, request_xml(boinc_volunteer.key, work_seconds=100)))
    refused = ours.rpc(tasks=1)

    assert reply.find("project_is_down") is not None and reply.findtext("request_delay") == "900"
    assert "moving to a new database" in reply.findtext("message")
    assert not Host.objects.filter(bearer=True).exists()
    assert refused.status_code == 503 and refused["Retry-After"] == "900"
    assert refused.json()["error"] == "maintenance"
