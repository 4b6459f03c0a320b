"""The endpoints a stock BOINC client calls, under ``/boinc/`` (docs/boinc.md).

Thin: each reads BOINC's format, calls a service, and writes BOINC's format. The scheduler and
the upload handler read the raw body whatever content type the client labels it with (it says
form-urlencoded), so Django's form parsing never runs on them, and both are exempt from CSRF
(a BOINC client has no cookie; it proves itself with its account key or our upload token).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers

from coordinator.accounts.api import NameField
from coordinator.accounts.relation import network_of
from coordinator.boinc import accounts, keys, reply, scheduler
from coordinator.boinc.request import read_request
from coordinator.boinc.xml import XmlRefused, element, error_reply, parse, render
from coordinator.core.errors import (
    AuthenticationRejected,
    Conflict,
    DomainError,
    InvalidInput,
    PermissionRefused,
    Unavailable,
)
from coordinator.core.throttles import FailedSigninThrottle, PageRateThrottle, client_address
from coordinator.work.models import AppVersion

logger = logging.getLogger(__name__)
XML = "text/xml; charset=utf-8"
MAX_SCHEDULER_BYTES = 4 * 1024 * 1024
# BOINC's error numbers (lib/error_numbers.h) for the web RPCs, which the client turns into words.
ERR_NOT_FOUND, ERR_NOT_UNIQUE, ERR_BAD_EMAIL, ERR_BAD_PASSWD, ERR_NO_SIGNUP = -136, -137, -205, -206, -208
ERR_GENERIC = -1
BAD_KEY = "Invalid or missing account key. To fix, remove and add this project."
TOO_MANY_TRIES = "Too many wrong passwords from your address lately; try again later."
TOO_MANY_ACCOUNTS = "Too many accounts were made from your address lately; try again later."


def project(request: HttpRequest) -> reply.Project:
    return reply.Project(
        name=settings.PROJECT_NAME, master_url=request.build_absolute_uri(reverse("boinc:master"))
    )


def master(request: HttpRequest) -> HttpResponse:
    """The master URL a volunteer types into the BOINC Manager: it names the scheduler, each
    form on its own short line (the client reads lines of at most 256 bytes)."""
    url = f"{project(request).master_url}cgi"
    page = (
        "<!DOCTYPE html>\n<html><head><title>{name}</title>\n"
        '<link rel="boinc_scheduler" href="{url}">\n'
        "</head><body>\n<!-- <scheduler>{url}</scheduler> -->\n"
        "<p>{name} takes volunteers running the BOINC client: add this address as a project "
        "in the BOINC Manager.</p>\n</body></html>\n"
    )
    return HttpResponse(page.format(name=settings.PROJECT_NAME, url=url), content_type="text/html")


def project_config(request: HttpRequest) -> HttpResponse:
    """get_project_config.php: what the Manager's add-project wizard needs."""
    platforms = sorted(set(AppVersion.objects.filter(runtime="boinc").values_list("platform", flat=True)))
    root = element(
        "project_config",
        element("platforms", *[element("platform", platform_name=name) for name in platforms]),
        name=settings.PROJECT_NAME,
        master_url=project(request).master_url,
        min_passwd_length=8,
        account_creation_disabled=not settings.TESSERA["SIGNUP_OPEN"],
    )
    return HttpResponse(render(root), content_type=XML)


class LookupSerializer(serializers.Serializer):
    email_addr = serializers.CharField(max_length=254)
    passwd_hash = serializers.RegexField(r"^[0-9a-fA-F]{32}$")


class CreateSerializer(LookupSerializer):
    user_name = NameField(r"^[\w.@+-]{1,150}$", max_length=150)  # as the sign-up API's


def _account_reply(work: Callable[[], str]) -> HttpResponse:
    try:
        key = work()
    except AuthenticationRejected as error:
        return HttpResponse(error_reply(ERR_BAD_PASSWD, error.message), content_type=XML)
    except PermissionRefused as error:
        return HttpResponse(error_reply(ERR_NO_SIGNUP, error.message), content_type=XML)
    except Conflict as error:
        return HttpResponse(error_reply(ERR_NOT_UNIQUE, error.message), content_type=XML)
    except InvalidInput as error:
        return HttpResponse(error_reply(ERR_BAD_EMAIL, error.message), content_type=XML)
    return HttpResponse(render(element("account_out", authenticator=key)), content_type=XML)


def lookup_account(request: HttpRequest) -> HttpResponse:
    """lookup_account.php: a new account key for email and BOINC's password hash."""
    incoming = LookupSerializer(data=request.GET.dict())
    if not incoming.is_valid():
        return HttpResponse(error_reply(ERR_BAD_PASSWD, _first_error(incoming)), content_type=XML)
    data = incoming.validated_data
    # Wrong passwords per address share the sign-in pages' and the token API's allowance
    # (THROTTLE_TOKEN): the password hash cannot be guessed here any faster than there.
    throttle = FailedSigninThrottle()
    if not throttle.allow_request(request, None):
        return HttpResponse(error_reply(ERR_BAD_PASSWD, TOO_MANY_TRIES), content_type=XML)

    def attempt() -> str:
        try:
            return accounts.lookup_account(
                email=data["email_addr"], hashed=data["passwd_hash"], now=timezone.now()
            )
        except AuthenticationRejected:
            throttle.record_failure()
            raise

    return _account_reply(attempt)


def create_account(request: HttpRequest) -> HttpResponse:
    """create_account.php: a new account with BOINC access, if the project takes sign-ups."""
    incoming = CreateSerializer(data=request.GET.dict())
    if not incoming.is_valid():
        return HttpResponse(error_reply(ERR_BAD_EMAIL, _first_error(incoming)), content_type=XML)
    if not PageRateThrottle("signup").allow_request(request, None):  # as the sign-up API and page
        return HttpResponse(error_reply(ERR_GENERIC, TOO_MANY_ACCOUNTS), content_type=XML)
    data = incoming.validated_data
    return _account_reply(
        lambda: accounts.create_account(
            email=data["email_addr"],
            hashed=data["passwd_hash"],
            user_name=data["user_name"],
            now=timezone.now(),
        )
    )


def _first_error(incoming: serializers.Serializer) -> str:
    field, problems = next(iter(incoming.errors.items()))
    return f"{field}: {problems[0]}"


@csrf_exempt
def scheduler_rpc(request: HttpRequest) -> HttpResponse:
    """The scheduler (BOINC's ``cgi``): a ``<scheduler_request>`` in, a ``<scheduler_reply>``
    out. A request that cannot be used still gets a reply the client shows, with a delay."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    about = project(request)
    body = request.read(MAX_SCHEDULER_BYTES + 1)
    try:
        boinc_request = read_request(parse(body, max_bytes=MAX_SCHEDULER_BYTES))
    except XmlRefused as error:
        return _refused(about, f"The project could not read the request: {error}", delay=3600)
    now = timezone.now()
    try:
        outcome = scheduler.handle(boinc_request, network=network_of(client_address(request)), now=now)
    except AuthenticationRejected:
        return _refused(about, BAD_KEY, delay=3600)
    except Unavailable as error:  # down for maintenance: the client shows it and waits
        body = reply.render_reply(
            None, project=about, delay=error.retry_after or 3600, messages=[error.message], down=True
        )
        return HttpResponse(body, content_type=XML)
    except DomainError as error:
        logger.info("a BOINC request was refused: %s", error.message)
        return _refused(about, f"The project refused the request: {error.message}", delay=600)
    sign_key, sign_key_signature = keys.key_for_client(boinc_request.code_sign_key)
    delay = outcome.rpc.next_rpc_seconds if outcome.rpc else 60
    messages = outcome.rpc.messages if outcome.rpc else []
    body_out = reply.render_reply(
        outcome,
        project=about,
        delay=delay,
        messages=messages,
        code_sign_key=sign_key,
        code_sign_key_signature=sign_key_signature,
    )
    return HttpResponse(body_out, content_type=XML)


def _refused(about: reply.Project, message: str, *, delay: int) -> HttpResponse:
    return HttpResponse(
        reply.render_reply(None, project=about, delay=delay, messages=[message]), content_type=XML
    )
