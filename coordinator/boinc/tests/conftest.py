"""What the BOINC tests share: a BOINC key, an app with a BOINC version, a volunteer with a key,
and requests written the way BOINC 7.20's client writes them (BOINC-PROTOCOL.md 1.4)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from xml.sax.saxutils import escape

import pytest
from django.test import Client
from django.utils import timezone

from coordinator.accounts.models import Volunteer
from coordinator.boinc import accounts, keys
from coordinator.boinc.publishing import publish_for_boinc
from coordinator.testing import CODE_SIGNING_KEY, make_app, make_volunteer
from coordinator.work.bundles import zip_files
from coordinator.work.models import App, AppVersion
from coordinator.work.services import register_app_version

X86 = "x86_64-pc-linux-gnu"
CROSS_PROJECT_ID = "00112233445566778899aabbccddeeff"
PROGRAM = b"#!/bin/sh\necho done > output\n"  # the app's executable as its native bundle holds it


@pytest.fixture(autouse=True)
def boinc_settings(settings, tmp_path):
    settings.BOINC_KEY_FILE = tmp_path / "boinc.pem"
    settings.BOINC_UPLOAD_DIR = tmp_path / "uploads"
    settings.BOINC_PUBLIC_KEY = ""
    return settings


@pytest.fixture
def boinc_key():
    return keys.create_key()


def native_bundle(program: bytes = PROGRAM) -> bytes:
    manifest = {"api": 1, "runtime": "native", "entrypoint": "bin/app"}
    return zip_files({"tessera-app.json": json.dumps(manifest).encode(), "bin/app": program})


@pytest.fixture
def boinc_app(boinc_key) -> App:
    """An app with a native x86-64 Linux version and its BOINC twin (our launcher + the program)."""
    app = make_app()
    register_app_version(
        app=app,
        version=1,
        bundle=native_bundle(),
        signing_key=CODE_SIGNING_KEY,
        platform=X86,
        runtime="native",
    )
    [twin] = publish_for_boinc(app=app, version=1, signing_key=CODE_SIGNING_KEY)
    assert twin.runtime == "boinc"
    AppVersion.objects.filter(app=app).exclude(runtime="boinc").delete()  # BOINC's only
    return app


@dataclass
class Volunteering:
    volunteer: Volunteer
    key: str


@pytest.fixture
def boinc_volunteer() -> Volunteering:
    volunteer, _ = make_volunteer()
    return Volunteering(
        volunteer, accounts.issue_key(volunteer=volunteer, now=timezone.now(), issued_by="test")
    )


def request_xml(
    key: str,
    *,
    hostid: int = 0,
    seqno: int = 1,
    work_seconds: float = 0.0,
    results: str = "",
    other_results: tuple[str, ...] = (),
    code_sign_key: str = "",
) -> bytes:
    """A scheduler request as the 7.20 client writes one (the parts we read, and some we don't)."""
    others = "".join(f"<other_result><name>{name}</name></other_result>" for name in other_results)
    sign = f"<code_sign_key>\n{code_sign_key}</code_sign_key>\n" if code_sign_key else ""
    return f"""<scheduler_request>
    <authenticator>{escape(key)}</authenticator>
    <hostid>{hostid}</hostid>
    <rpc_seqno>{seqno}</rpc_seqno>
    <core_client_major_version>7</core_client_major_version>
    <core_client_minor_version>20</core_client_minor_version>
    <core_client_release>5</core_client_release>
    <resource_share_fraction>1.000000</resource_share_fraction>
    <work_req_seconds>{work_seconds:f}</work_req_seconds>
    <cpu_req_secs>{work_seconds:f}</cpu_req_secs>
    <cpu_req_instances>0.000000</cpu_req_instances>
    <platform_name>{X86}</platform_name>
    {sign}<cross_project_id>{CROSS_PROJECT_ID}</cross_project_id>
    <time_stats>
        <on_frac>0.950000</on_frac>
        <connected_frac>1.000000</connected_frac>
        <active_frac>0.900000</active_frac>
    </time_stats>
    <host_info>
        <host_cpid>0123456789abcdef0123456789abcdef</host_cpid>
        <p_ncpus>4</p_ncpus>
        <p_vendor>GenuineIntel</p_vendor>
        <p_model>Intel(R) Xeon(R) CPU</p_model>
        <p_features>fpu vme sse2 avx2</p_features>
        <p_fpops>3000000000.000000</p_fpops>
        <p_iops>9000000000.000000</p_iops>
        <m_nbytes>8589934592.000000</m_nbytes>
        <d_free>50000000000.000000</d_free>
        <os_name>Linux Debian</os_name>
        <os_version>Debian GNU/Linux 12 (bookworm) [6.1.0]</os_version>
    </host_info>
    {results}
    <other_results>{others}</other_results>
</scheduler_request>
""".encode()


def post(client: Client, body: bytes):
    """As the client sends it: labelled form-urlencoded, whatever it holds."""
    return client.post("/boinc/cgi", data=body, content_type="application/x-www-form-urlencoded")


def read(response) -> object:
    """The reply, parsed by a strict XML parser."""
    import xml.etree.ElementTree as ET

    assert response.status_code == 200, response.content[:500]
    return ET.fromstring(response.content)


def zip_names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()
