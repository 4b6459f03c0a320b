"""The claims of docs/security.md that no other test covered, one test per claim.

Each test talks to the real database through the real endpoints, signing as the client does
(``tessera_client.signing``). Tests with a docstring starting "Residual risk" assert what an
attacker *can* do today (docs/security.md, "Residual risks"), so that closing the risk makes
them fail and the document is updated with the code.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.checks import run_checks
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import ProtectedError
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from tessera_client import cli
from tessera_client.protocol import HostKey, Report
from tessera_client.signing import sign_request

from coordinator.accounts.models import Host, HostNonce, Volunteer
from coordinator.accounts.services import (
    SignedRequest,
    authenticate_host,
    hash_token,
    issue_account_token,
    purge_nonces,
)
from coordinator.core import keys, objects, throttles
from coordinator.core.errors import AuthenticationRejected
from coordinator.scheduler import dispatch as scheduler_dispatch
from coordinator.science.models import ScientistToken
from coordinator.science.services import split_due_batches
from coordinator.standing.models import HostAppReputation
from coordinator.standing.reputation import TRUST_AFTER_CONSECUTIVE_VALID
from coordinator.testing import (
    PASSWORD,
    SignedHost,
    assert_error,
    make_app,
    make_host,
    make_scientist,
    make_units,
    make_volunteer,
)
from coordinator.validation.models import LedgerEntry
from coordinator.validation.services import validate_due_units
from coordinator.work.lifecycle import Outcome, UnitState, ValidateState
from coordinator.work.models import Batch, Replica, WorkUnit
from coordinator.work.publishing import publish_app
from coordinator.work.services import transition_due_units

pytestmark = pytest.mark.django_db

SCHEDULER = "/api/v1/scheduler"
HOSTS = "/api/v1/hosts"
SIGNUP = "/api/v1/volunteers"
TOKEN = "/api/v1/volunteers/token"


def quiet_client(**defaults: Any) -> Client:
    """A refused request must be a response the test can look at, never an exception."""
    return Client(raise_request_exception=False, **defaults)


def signed(host: Host, key: HostKey) -> SignedHost:
    return SignedHost(host, key, quiet_client())


def meta_of(headers: dict[str, str]) -> dict[str, str]:
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def register(client: Client, token: str, key: HostKey, name: str = "laptop"):
    """POST /api/v1/hosts as ``tessera attach`` does: the account token, signed by the new key."""
    body = json.dumps(
        {
            "public_key": key.public_key_b64,
            "name": name,
            "platform": "linux-x86_64",
            "n_cpus": 2,
            "memory_bytes": 4 << 30,
        }
    ).encode()
    headers = sign_request(key.signing_key, method="POST", path=HOSTS, body=body)
    return client.generic(
        "POST",
        HOSTS,
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
        **meta_of(headers),
    )


def settle() -> None:
    """What the worker does between requests: transitions, validation, transitions."""
    now = timezone.now()
    transition_due_units(now=now)
    validate_due_units(now=now)
    transition_due_units(now=now)


def crunch(host: SignedHost, output: bytes, tasks: int = 1) -> list[int]:
    """The host takes work and reports ``output`` for each task."""
    got = host.rpc(tasks=tasks).json()["tasks"]
    reports = [Report(replica=t["replica"], status="success", cpu_time=60.0, output=output) for t in got]
    if reports:
        reply = host.rpc(reports=reports)
        assert reply.status_code == 200, reply.content
    return [t["replica"] for t in got]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def replica_rows() -> list[dict[str, Any]]:
    return [
        {**row, "output_inline": None if row["output_inline"] is None else bytes(row["output_inline"])}
        for row in Replica.objects.order_by("pk").values()
    ]


def with_rates(settings, **rates: str) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


# --- a malicious volunteer ------------------------------------------------------------------


def test_a_host_cannot_report_or_upload_for_a_replica_of_another_host_of_its_own_volunteer():
    make_units(make_app(), 2, min_quorum=1, target_nresults=1)
    volunteer, _ = make_volunteer()
    first, second = signed(*make_host(volunteer)), signed(*make_host(volunteer))
    theirs = second.rpc(tasks=1).json()["tasks"][0]["replica"]
    before = replica_rows()

    report = first.rpc(reports=[Report(replica=theirs, status="success", cpu_time=1.0, output=b"mine")])
    policy = first.upload_policy(theirs)

    assert_error(report, 403, "not_your_replica")
    assert_error(policy, 403, "not_your_replica")
    assert replica_rows() == before
    # Control: the host it was sent to may report it.
    own = second.rpc(reports=[Report(replica=theirs, status="success", cpu_time=1.0, output=b"mine")])
    assert own.json()["acks"] == [{"replica": theirs, "status": "accepted"}]


def test_rewriting_an_upload_after_the_report_changes_nothing_that_counts():
    make_units(make_app(), 1, min_quorum=1, target_nresults=1)
    host = signed(*make_host())
    replica_id = host.rpc(tasks=1).json()["tasks"][0]["replica"]
    output = b"the honest output " * 400  # over the inline limit: it goes through the storage
    policy = host.upload_policy(replica_id).json()
    assert host.upload(replica_id, output, policy=policy).status_code == 204
    reply = host.rpc(
        reports=[Report(replica=replica_id, status="success", cpu_time=1, output=output, inline=False)]
    )
    assert reply.status_code == 200, reply.content

    # The policy has not expired: the host can still write its upload key, but not what was checked.
    assert host.upload(replica_id, b"swapped after the check", policy=policy).status_code == 204
    settle()

    replica = Replica.objects.get(pk=replica_id)
    assert replica.output_file.name.startswith(f"outputs/{replica.workunit_id}/{replica_id}-")
    with default_storage.open(replica.output_file.name, "rb") as handle:
        assert handle.read() == output
    assert replica.validate_state == ValidateState.VALID
    assert WorkUnit.objects.get(pk=replica.workunit_id).canonical_replica_id == replica_id


def test_a_host_over_its_rate_is_429_and_changes_nothing(settings):
    with_rates(settings, host="3/minute")
    make_units(make_app(), 4, min_quorum=1, target_nresults=1)
    busy, other = signed(*make_host()), signed(*make_host())
    replica_id = busy.rpc(tasks=1).json()["tasks"][0]["replica"]
    assert busy.upload_policy(replica_id).status_code == 200  # the upload policy counts too
    assert busy.rpc().status_code == 200
    before = replica_rows()

    refused = busy.rpc(reports=[Report(replica=replica_id, status="client_error", cpu_time=1.0)], tasks=1)

    assert_error(refused, 429, "throttled")
    assert int(refused["Retry-After"]) > 0
    assert replica_rows() == before, "a throttled request records nothing and hands out nothing"
    assert_error(busy.upload_policy(replica_id), 429, "throttled")
    # The limit is per host: another host goes on.
    assert other.rpc(tasks=1).status_code == 200


def test_forged_requests_do_not_spend_a_hosts_allowance(settings):
    with_rates(settings, host="3/minute")
    victim_host, victim_key = make_host()
    victim = signed(victim_host, victim_key)
    forger = SignedHost(victim_host, HostKey.generate(), quiet_client())  # the victim's id, another key

    for _ in range(10):
        assert_error(forger.rpc(), 401, "bad_signature")

    assert [victim.rpc().status_code for _ in range(4)] == [200, 200, 200, 429]


def test_colluding_hosts_that_form_the_quorum_get_a_wrong_output_accepted():
    """Residual risk: redundancy catches a lone liar, not a quorum of liars agreeing. Until an
    established host audits it: nobody vouched for it (test_correction.py)."""
    unit = make_units(make_app(), 1, min_quorum=2, target_nresults=2)[0]
    first, second = signed(*make_host()), signed(*make_host())  # two volunteers
    crunch(first, b"an agreed lie")
    crunch(second, b"an agreed lie")

    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE
    assert bytes(unit.canonical_replica.output_inline) == b"an agreed lie"
    assert LedgerEntry.objects.filter(replica__workunit=unit).count() == 2
    assert unit.vouched_by_id is None, "so the correction sweep audits it"


def test_a_trusted_hosts_wrong_answer_on_a_unit_it_had_alone_is_accepted(monkeypatch):
    """Residual risk: adaptive replication sends units alone to trusted hosts; between spot
    checks nothing compares their answers."""
    app = make_app()
    host, key = make_host(established=True)
    HostAppReputation.objects.create(host=host, app=app, consecutive_valid=TRUST_AFTER_CONSECUTIVE_VALID)
    monkeypatch.setattr(scheduler_dispatch, "draw", lambda: 0.99)  # no spot check this time
    unit = make_units(app, 1, min_quorum=2, target_nresults=2)[0]

    crunch(signed(host, key), b"a wrong answer")
    settle()

    unit.refresh_from_db()
    assert unit.state == UnitState.DONE
    assert bytes(unit.canonical_replica.output_inline) == b"a wrong answer"
    assert unit.replicas.filter(outcome=Outcome.SUCCESS).count() == 1


# --- a stolen host key ------------------------------------------------------------------------


def test_a_host_key_keeps_working_after_the_account_token_is_replaced():
    """Residual risk: a new account token does not revoke the keys of hosts already registered."""
    make_units(make_app(), 1, min_quorum=1, target_nresults=1)
    volunteer, _ = make_volunteer()
    host = signed(*make_host(volunteer))

    issue_account_token(volunteer=volunteer, now=timezone.now())

    reply = host.rpc(tasks=1)
    assert reply.status_code == 200 and len(reply.json()["tasks"]) == 1


def test_a_host_that_was_sent_work_cannot_be_deleted():
    """Residual risk: one host cannot be revoked once it has a history; only its volunteer can
    be deactivated (``test_a_deactivated_volunteers_hosts_are_refused``)."""
    make_units(make_app(), 1)
    idle, idle_key = make_host()
    busy, busy_key = make_host()
    assert signed(busy, busy_key).rpc(tasks=1).json()["tasks"]

    with pytest.raises(ProtectedError):
        Host.objects.filter(pk=busy.pk).delete()

    # A host that never got work can be deleted, and its key is refused from then on.
    Host.objects.filter(pk=idle.pk).delete()
    assert_error(signed(idle, idle_key).rpc(), 401, "unknown_host")


def test_a_deactivated_volunteers_hosts_are_refused():
    make_units(make_app(), 1, min_quorum=1, target_nresults=1)
    volunteer, token = make_volunteer()
    host = signed(*make_host(volunteer))
    assert host.rpc().status_code == 200
    User = get_user_model()

    User.objects.filter(pk=volunteer.user_id).update(is_active=False)

    assert_error(host.rpc(tasks=1), 401, "account_disabled")
    assert_error(register(quiet_client(), token, HostKey.generate()), 401)
    signin = quiet_client()
    assert (
        signin.post("/signin", {"username": volunteer.user.username, "password": PASSWORD}).status_code == 200
    )
    assert "_auth_user_id" not in signin.session
    assert not Replica.objects.filter(host=host.host).exists()
    # Control: the same host, reactivated, gets the work.
    User.objects.filter(pk=volunteer.user_id).update(is_active=True)
    assert len(host.rpc(tasks=1).json()["tasks"]) == 1


def test_a_purged_nonce_cannot_be_replayed_because_its_timestamp_is_stale(settings):
    host, key = make_host()
    skew = settings.TESSERA["SIGNATURE_MAX_SKEW_SECONDS"]
    sent = timezone.now()
    headers = sign_request(
        key.signing_key,
        method="POST",
        path=SCHEDULER,
        body=b"{}",
        host_id=host.pk,
        timestamp=int(sent.timestamp()),
    )
    request = SignedRequest(
        method="POST",
        path=SCHEDULER,
        body=b"{}",
        host_id=headers["X-Tessera-Host"],
        timestamp=headers["X-Tessera-Timestamp"],
        nonce=headers["X-Tessera-Nonce"],
        signature=headers["X-Tessera-Signature"],
    )
    assert authenticate_host(signed=request, now=sent) == host

    with pytest.raises(AuthenticationRejected) as replayed:
        authenticate_host(signed=request, now=sent + timedelta(seconds=skew - 1))
    assert replayed.value.code == "replayed"
    assert purge_nonces(now=sent + timedelta(seconds=skew + 1)) == 0, "kept for twice the window"
    later = sent + timedelta(seconds=2 * skew + 1)
    assert purge_nonces(now=later) == 1
    assert not HostNonce.objects.filter(host=host).exists()
    with pytest.raises(AuthenticationRejected) as stale:
        authenticate_host(signed=request, now=later)
    assert stale.value.code == "stale_timestamp"


@pytest.mark.django_db(transaction=True)
def test_the_client_keeps_no_account_token_on_disk(live_server, tmp_path):
    keys.create_project_key(keys.project_key_path())
    _, token = make_volunteer()
    data = tmp_path / "volunteer"

    assert cli.main(["--data-dir", str(data), "attach", live_server.url, "--token", token]) == 0

    files = [path for path in data.rglob("*") if path.is_file()]
    assert files, "attach wrote its project and its key"
    for path in files:
        text = path.read_bytes()
        assert token.encode() not in text and hash_token(token).encode() not in text, path
    (key_file,) = data.glob("keys/*.key")
    assert key_file.stat().st_mode & 0o077 == 0
    # The coordinator holds the public half only.
    private = key_file.read_text().strip()
    host = Host.objects.get()
    assert host.public_key == HostKey.load(key_file).public_key_b64
    assert private not in json.dumps(list(Host.objects.values()), default=str)


# --- a stolen account token -------------------------------------------------------------------


def test_a_stolen_account_token_registers_at_most_a_days_hosts_and_those_hosts_stay(settings):
    """Residual risk: a new token does not remove hosts already registered. The thief gets
    no more than ``MAX_HOSTS_PER_DAY`` of them, the day's registrations of the account."""
    most = settings.TESSERA["MAX_HOSTS_PER_DAY"]
    client = quiet_client()
    volunteer, stolen = make_volunteer()
    thief_keys = [HostKey.generate() for _ in range(most + 1)]

    statuses = [register(client, stolen, key, f"thief{n}").status_code for n, key in enumerate(thief_keys)]

    assert statuses == [201] * most + [429]
    refused = register(client, stolen, HostKey.generate())
    assert_error(refused, 429, "too_many_hosts")
    assert int(refused["Retry-After"]) > 0
    fresh = issue_account_token(volunteer=volunteer, now=timezone.now())
    assert_error(register(client, stolen, HostKey.generate()), 401)
    Host.objects.filter(volunteer=volunteer).update(created=timezone.now() - timedelta(days=2))
    assert register(client, fresh, HostKey.generate()).status_code == 201
    thief = Host.objects.get(public_key=thief_keys[0].public_key_b64)
    assert thief.volunteer_id == volunteer.pk
    assert signed(thief, thief_keys[0]).rpc().status_code == 200


def test_an_account_token_opens_no_web_page_and_no_scientist_or_host_endpoint():
    _, token = make_volunteer()
    holder = quiet_client(HTTP_AUTHORIZATION=f"Token {token}")

    assert holder.get("/account").status_code == 302  # to the sign-in page: pages want a session
    assert holder.get("/admin/").status_code == 302
    assert_error(quiet_client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/batches"), 401)
    assert_error(holder.post(SCHEDULER, b"{}", content_type="application/json"), 401, "not_signed")
    # Control: the token does what it is for.
    assert register(quiet_client(), token, HostKey.generate()).status_code == 201


def test_token_requests_are_limited_per_address():
    client = quiet_client()
    volunteer, token = make_volunteer("guessed")
    wrong = {"username": "guessed", "password": "not the password"}

    for _ in range(30):  # THROTTLE_TOKEN's default: 30 an hour
        assert_error(client.post(TOKEN, wrong, content_type="application/json"), 401)
    right = client.post(TOKEN, {"username": "guessed", "password": PASSWORD}, content_type="application/json")

    assert_error(right, 429, "throttled")
    assert Volunteer.objects.get(pk=volunteer.pk).token_hash == hash_token(token), "nothing changed"


def spoofed(number: int) -> str:
    """What a proxy that appends the client's address passes on when the client made up its own."""
    return f"10.0.{number}.1, 203.0.113.9"


def test_signup_limit_cannot_be_dodged_with_x_forwarded_for(settings):
    """Behind a trusted proxy only the entry the proxy wrote counts."""
    settings.FORWARDED_ALLOW_IPS = ["127.0.0.1"]  # the proxy: the test client calls from there
    client = quiet_client()
    for number in range(20):  # THROTTLE_SIGNUP's default: 20 an hour
        body = {"username": f"bulk{number}", "password": PASSWORD}
        reply = client.post(
            SIGNUP, body, content_type="application/json", HTTP_X_FORWARDED_FOR=spoofed(number)
        )
        assert reply.status_code == 201

    one_more = client.post(
        SIGNUP,
        {"username": "bulk20", "password": PASSWORD},
        content_type="application/json",
        HTTP_X_FORWARDED_FOR=spoofed(20),
    )

    assert_error(one_more, 429, "throttled")
    assert not get_user_model().objects.filter(username="bulk20").exists()


def test_token_limit_cannot_be_dodged_with_x_forwarded_for(settings):
    settings.FORWARDED_ALLOW_IPS = ["127.0.0.1"]  # the proxy: the test client calls from there
    client = quiet_client()
    make_volunteer("guessed")
    wrong = {"username": "guessed", "password": "not the password"}
    for number in range(30):  # THROTTLE_TOKEN's default: 30 an hour
        reply = client.post(
            TOKEN, wrong, content_type="application/json", HTTP_X_FORWARDED_FOR=spoofed(number)
        )
        assert reply.status_code == 401

    one_more = client.post(TOKEN, wrong, content_type="application/json", HTTP_X_FORWARDED_FOR=spoofed(30))

    assert_error(one_more, 429, "throttled")


def test_x_forwarded_for_counts_only_from_a_proxy_in_forwarded_allow_ips(settings):
    with_rates(settings, signup="2/hour")
    settings.FORWARDED_ALLOW_IPS = ["192.0.2.1"]  # the proxy; the test client calls from 127.0.0.1
    direct = quiet_client()

    made = [
        direct.post(
            SIGNUP,
            {"username": f"direct{n}", "password": PASSWORD},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in range(3)
    ]

    assert made == [201, 201, 429], "a client's own header is ignored: one address, one allowance"
    # Control: through the proxy, two clients are two addresses, each with its own allowance.
    proxy = quiet_client(REMOTE_ADDR="192.0.2.1")
    for client_address in ("198.51.100.7", "198.51.100.8"):
        for n in range(2):
            body = {"username": f"proxied{client_address[-1]}{n}", "password": PASSWORD}
            reply = proxy.post(
                SIGNUP, body, content_type="application/json", HTTP_X_FORWARDED_FOR=client_address
            )
            assert reply.status_code == 201, reply.content


def test_by_default_no_peer_is_a_proxy_so_x_forwarded_for_is_ignored(settings):
    """The development default (``make run``): anyone on the machine calls from the loopback,
    so believing the loopback's header would give each of their sign-ups a new address."""
    assert settings.FORWARDED_ALLOW_IPS == [], "the default must trust no proxy"
    with_rates(settings, signup="2/hour")
    local = quiet_client(REMOTE_ADDR="127.0.0.1")

    made = [
        local.post(
            SIGNUP,
            {"username": f"local{n}", "password": PASSWORD},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in range(3)
    ]

    assert made == [201, 201, 429], "three made-up addresses from one peer are one address"
    assert not get_user_model().objects.filter(username="local2").exists()
    # Control: once the loopback is named as the proxy, its header is believed.
    settings.FORWARDED_ALLOW_IPS = ["127.0.0.1", "::1"]
    reply = local.post(
        SIGNUP,
        {"username": "local3", "password": PASSWORD},
        content_type="application/json",
        HTTP_X_FORWARDED_FOR="198.51.100.3",
    )
    assert reply.status_code == 201


@pytest.mark.parametrize(
    ("allowed", "believed"),
    [
        ([], "127.0.0.1"),
        (["*"], "198.51.100.9"),
        (["10.0.0.0/8", " 127.0.0.1"], "198.51.100.9"),  # as "10.0.0.0/8, 127.0.0.1" reads
        (["192.0.2.1"], "127.0.0.1"),
    ],
)
def test_client_address_believes_x_forwarded_for_only_from_the_listed_proxies(settings, allowed, believed):
    settings.FORWARDED_ALLOW_IPS = allowed
    request = RequestFactory().get(
        "/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.9"
    )

    assert throttles.client_address(request) == believed


@pytest.mark.parametrize(("page", "staff"), [("/signin", False), ("/admin/login/", True)])
def test_wrong_passwords_on_the_sign_in_pages_are_limited_per_address(settings, page, staff):
    with_rates(settings, token="5/hour")
    get_user_model().objects.create_user("member", password=PASSWORD, is_staff=staff)
    guesser = quiet_client()
    for _ in range(5):
        answer = guesser.post(page, {"username": "member", "password": "wrong guess"})
        assert answer.status_code == 200 and "_auth_user_id" not in guesser.session

    right = guesser.post(page, {"username": "member", "password": PASSWORD})

    assert right.status_code == 200 and "Too many wrong passwords" in right.content.decode()
    assert "_auth_user_id" not in guesser.session
    # The pages and the token endpoint share one allowance per address.
    assert_error(guesser.post(TOKEN, {"username": "member", "password": PASSWORD}), 429, "throttled")
    # Control: from another address the right password signs in.
    assert (
        quiet_client(REMOTE_ADDR="192.0.2.44")
        .post(page, {"username": "member", "password": PASSWORD})
        .status_code
        == 302
    )


def test_successful_sign_ins_do_not_count_against_the_limit(settings):
    with_rates(settings, token="2/hour")
    make_volunteer("member")

    answers = [
        quiet_client().post("/signin", {"username": "member", "password": PASSWORD}).status_code
        for _ in range(4)
    ]

    assert answers == [302] * 4


# --- admin pages and scientists ---------------------------------------------------------------


def admin_pages() -> list[str]:
    """The list page of every model in the admin site, its add page where the site has one, and
    the scientists' extra pages: found from the site itself, so a new model is covered too."""
    root = RequestFactory().get("/admin/")
    root.user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    pages = ["/admin/", reverse("admin:science_api_token")]
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        if model_admin.has_add_permission(root):
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    return pages


def signed_in(user) -> Client:
    client = quiet_client()
    client.force_login(user)
    return client


def test_admin_pages_are_refused_to_anonymous_visitors_and_volunteers():
    volunteer, _ = make_volunteer()
    root = get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)

    for page in admin_pages():
        for client in (quiet_client(), signed_in(volunteer.user)):
            answer = client.get(page)
            assert answer.status_code == 302 and answer["Location"].startswith("/admin/login/"), page
        assert signed_in(root).get(page).status_code == 200, page  # control: the page exists


def test_a_scientist_sees_only_batches_in_the_admin_and_other_staff_nothing():
    scientist, _ = make_scientist()
    staff = get_user_model().objects.create_user("helper", password=PASSWORD, is_staff=True)
    batches = {reverse("admin:work_batch_changelist"), reverse("admin:work_batch_add")}
    allowed = {"/admin/", reverse("admin:science_api_token"), *batches}

    for page in admin_pages():
        assert signed_in(scientist).get(page).status_code == (200 if page in allowed else 403), page
        if page != "/admin/":
            assert signed_in(staff).get(page).status_code == 403, page
    index = signed_in(scientist).get("/admin/").content.decode()
    assert reverse("admin:work_batch_changelist") in index
    assert reverse("admin:accounts_volunteer_changelist") not in index


def test_scientist_tokens_are_stored_hashed_and_open_no_volunteer_endpoint():
    user, token = make_scientist()

    assert ScientistToken.objects.get(user=user).token_hash == hash_token(token) != token
    assert_error(register(quiet_client(), token, HostKey.generate()), 401)
    assert quiet_client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/batches").status_code == 200


@pytest.fixture
def published():
    key = keys.create_project_key(keys.project_key_path())
    for name in ("montecarlo_pi", "sir_sweep"):
        publish_app(name=name, signing_key=key)


SIR_REST = {"seed": 1, "population": 200, "initial_infected": 2, "days": 30, "runs": 2}
TABLE = b"beta,gamma\n0.2,0.1\n0.5,0.1\n"


@pytest.mark.parametrize("name", ["../../../../escape.csv", "/tmp/escape.csv", "..\\..\\escape.csv"])
def test_a_parameter_file_name_is_never_used_as_a_path(published, media_root, tmp_path, name):
    user, token = make_scientist()
    before = files_under(tmp_path)

    by_api = quiet_client(HTTP_AUTHORIZATION=f"Bearer {token}").post(
        "/api/v1/batches",
        {
            "app": "sir_sweep",
            "name": "api",
            "parameters": json.dumps(SIR_REST),
            "parameter_file": SimpleUploadedFile(name, TABLE),
        },
    )
    by_form = signed_in(user).post(
        reverse("admin:work_batch_add"),
        {
            "name": "form",
            "app_name": "sir_sweep",
            "parameters_json": json.dumps(SIR_REST),
            "parameter_file": SimpleUploadedFile(name, TABLE),
            "min_quorum": 2,
            "target_nresults": 2,
            "max_error_results": 3,
            "max_total_results": 6,
            "deadline_hours": 24,
            "priority": 0,
        },
    )

    assert by_api.status_code == 201, by_api.content
    assert by_form.status_code == 302, by_form.content[:2000]
    assert [b.parameters["points"] for b in Batch.objects.order_by("pk")] == [
        [{"beta": 0.2, "gamma": 0.1}, {"beta": 0.5, "gamma": 0.1}]
    ] * 2
    assert files_under(tmp_path) == before, "the file is read in memory and never stored"
    assert not Path("/tmp/escape.csv").exists()


def test_a_batch_with_min_quorum_1_accepts_and_credits_one_unchecked_result(published):
    """Residual risk: a scientist may turn redundancy off for their batch; then one host's
    answer, right or wrong, is the result."""
    _, token = make_scientist()
    reply = quiet_client(HTTP_AUTHORIZATION=f"Bearer {token}").post(
        "/api/v1/batches",
        json.dumps(
            {
                "app": "montecarlo_pi",
                "name": "unchecked",
                "parameters": {"seed": 1, "units": 1, "samples_per_unit": 1000},
                "min_quorum": 1,
                "target_nresults": 1,
            }
        ),
        content_type="application/json",
    )
    assert reply.status_code == 201, reply.content
    split_due_batches(now=timezone.now())
    wrong = b'{"inside": 1000, "samples": 1000}'  # every point inside the circle: pi = 4

    assert crunch(signed(*make_host()), wrong, tasks=2), "the host got the batch's one unit"
    settle()

    unit = WorkUnit.objects.get(batch_id=reply.json()["id"])
    assert unit.state == UnitState.DONE and unit.granted_credit > 0
    assert bytes(unit.canonical_replica.output_inline) == wrong
    assert unit.replicas.count() == 1


# --- uploads and downloads: no path outside the storage ---------------------------------------


@pytest.fixture
def holder():
    """A host holding one replica, and that replica's upload policy."""
    make_units(make_app(), 2, min_quorum=1, target_nresults=1)
    host = signed(*make_host())
    replica_id = host.rpc(tasks=1).json()["tasks"][0]["replica"]
    unit_id = Replica.objects.get(pk=replica_id).workunit_id
    return host, replica_id, unit_id, host.upload_policy(replica_id).json()


@pytest.mark.parametrize(
    "key",
    [
        "uploads/{unit}/{replica}/../../../../escape",
        "uploads/{unit}/{replica}/../{next}",
        "../escape",
        "/tmp/escape",
        "uploads/{unit}/{replica}\x00",
    ],
)
def test_an_upload_key_other_than_the_policys_is_refused_and_nothing_is_written(holder, tmp_path, key):
    host, replica_id, unit_id, policy = holder
    forged_key = key.format(unit=unit_id, replica=replica_id, next=replica_id + 1)
    forged = {**policy, "fields": {**policy["fields"], "key": forged_key}}
    before = files_under(tmp_path)

    assert_error(host.upload(replica_id, b"output", policy=forged), 401, "authentication_failed")

    assert files_under(tmp_path) == before
    assert host.upload(replica_id, b"output", policy=policy).status_code == 204  # control


def forged_token(payload: dict[str, Any], salt: str) -> str:
    """A token signed with a key other than the coordinator's SECRET_KEY."""
    return signing.dumps(payload, key="not the coordinator's secret key", salt=salt, compress=True)


def test_a_transfer_token_signed_without_the_secret_key_is_refused(holder, tmp_path):
    host, replica_id, _, policy = holder
    far = int(time.time()) + 3600
    before = files_under(tmp_path)
    upload = {
        **policy,
        "fields": {
            "key": "../escape",
            "token": forged_token({"k": "../escape", "m": 10**6, "e": far}, objects.POST_SALT),
        },
    }

    assert_error(host.upload(replica_id, b"output", policy=upload), 401, "authentication_failed")
    download = quiet_client().get(
        "/api/v1/objects/download",
        {"token": forged_token({"k": "../../etc/passwd", "e": far}, objects.GET_SALT)},
    )

    assert_error(download, 401, "authentication_failed")
    assert files_under(tmp_path) == before


def test_even_a_token_the_coordinator_signed_cannot_reach_outside_the_storage(tmp_path, media_root):
    """Defence in depth: the coordinator only ever signs ``uploads/<unit>/<replica>`` and the
    keys of its own objects, and the file storage refuses any other path anyway."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not for hosts")
    outside = f"../{secret.name}"
    policy = objects.presigned_post(outside, max_bytes=100, expires_in=60)
    before = files_under(tmp_path)

    uploaded = quiet_client().post(policy.url, {**policy.fields, "file": SimpleUploadedFile("o", b"x")})
    downloaded = quiet_client().get(objects.presigned_get(outside, expires_in=60))

    assert uploaded.status_code == 400 and downloaded.status_code == 400
    assert b"not for hosts" not in downloaded.content
    assert files_under(tmp_path) == before and secret.read_text() == "not for hosts"


# --- oversize bodies --------------------------------------------------------------------------


def test_a_registration_over_the_body_limit_is_413_before_it_is_read(settings):
    volunteer, token = make_volunteer()
    key = HostKey.generate()
    padding = "x" * (settings.TESSERA["REQUEST_BODY_MAX"] + 1)
    body = json.dumps({"public_key": key.public_key_b64, "name": "big", "pad": padding}).encode()
    headers = sign_request(key.signing_key, method="POST", path=HOSTS, body=body)

    reply = quiet_client().generic(
        "POST",
        HOSTS,
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
        **meta_of(headers),
    )

    assert_error(reply, 413, "too_large")
    assert not Host.objects.filter(volunteer=volunteer).exists()


def test_an_upload_over_the_output_ceiling_is_413_before_its_policy_is_read(settings):
    ceiling = settings.TESSERA["OUTPUT_BYTES_CEILING"]

    reply = quiet_client().generic(
        "POST",
        "/api/v1/objects/upload",
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(ceiling + 1024 * 1024),
    )

    assert_error(reply, 413, "too_large")


# --- the operator's settings ------------------------------------------------------------------


def test_check_deploy_flags_the_development_secret_key(settings):
    """Residual risk: the coordinator starts with the development SECRET_KEY; only
    ``manage.py check --deploy`` says so (security.W009)."""
    settings.SECRET_KEY = "tessera-insecure-development-key-change-me"  # settings.py's default
    flagged = {message.id for message in run_checks(include_deployment_checks=True)}
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    random_key = {message.id for message in run_checks(include_deployment_checks=True)}

    assert "security.W009" in flagged
    assert "security.W009" not in random_key
