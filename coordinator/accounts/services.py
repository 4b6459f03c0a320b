"""Writes for volunteers and hosts: accounts, tokens, host registration, request checks."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from tessera_client.signing import b64decode, body_digest, signature_is_valid, signing_message

from coordinator.accounts import names
from coordinator.accounts.limits import check_host_figures, check_registration_rate, starting_quota
from coordinator.accounts.models import Host, HostNonce, Volunteer
from coordinator.core.compiled import CompiledRead
from coordinator.core.errors import AuthenticationRejected, Conflict, InvalidInput
from coordinator.core.prepared import prepared_cursor

TOKEN_PREFIX = "tsr_"
HOST_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes "²"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@transaction.atomic
def create_volunteer(
    *,
    username: str,
    password: str | None,
    email: str = "",
    now: datetime,
    consent: tuple[bool, bool] | None = None,
) -> tuple[Volunteer, str]:
    """Make a volunteer account and its first account token (shown once). ``password`` None:
    an account without a Tessera password yet (made by a BOINC client, coordinator.boinc).
    ``consent``: the answers to (listed on leaderboards and exports, may be emailed), when
    the volunteer was asked (sign-up); None keeps the defaults (listed, no email)."""
    User = get_user_model()
    skeleton = names.name_skeleton(username)
    _refuse_taken_name(username, skeleton)
    user = User(username=username, email=email)
    if password is None:
        user.set_unusable_password()
    else:
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise InvalidInput(" ".join(error.messages), code="weak_password") from error
        user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            answers = (
                {} if consent is None else {"listed": consent[0], "email_ok": consent[1], "consent_at": now}
            )
            volunteer = Volunteer.objects.create(user=user, name_skeleton=skeleton, **answers)
    except IntegrityError as error:  # the same or a look-alike name, made at the same moment
        _refuse_taken_name(username, skeleton)
        raise Conflict(f"the name {username!r} is taken", code="username_taken") from error
    return volunteer, issue_account_token(volunteer=volunteer, now=now)


def _refuse_taken_name(username: str, skeleton: str) -> None:
    """Refuse a name in use, in any case, or one that looks like a volunteer's name."""
    if get_user_model().objects.filter(username__iexact=username).exists():
        raise Conflict(f"the name {username!r} is taken", code="username_taken")
    look_alike = Volunteer.objects.filter(name_skeleton=skeleton).select_related("user").first()
    if look_alike is not None:
        raise names.look_alike(username, look_alike.user.get_username())


def issue_account_token(*, volunteer: Volunteer, now: datetime) -> str:
    """Replace the volunteer's account token; the old one stops working at once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    Volunteer.objects.filter(pk=volunteer.pk).update(token_hash=hash_token(token), token_created=now)
    volunteer.token_hash = hash_token(token)
    return token


def volunteer_for_token(token: str) -> Volunteer:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise AuthenticationRejected("the account token is not valid")
    volunteer = Volunteer.objects.select_related("user").filter(token_hash=hash_token(token)).first()
    if volunteer is None or not volunteer.user.is_active:
        raise AuthenticationRejected("the account token is not valid")
    return volunteer


@dataclass(frozen=True)
class SignedRequest:
    """What a host sent: the signature headers and the request that was signed."""

    method: str
    path: str
    body: bytes
    host_id: str | None
    timestamp: str | None
    nonce: str | None
    signature: str | None


def _checked_parts(signed: SignedRequest, now: datetime) -> tuple[int, str, bytes]:
    if not (signed.timestamp and signed.nonce and signed.signature):
        raise AuthenticationRejected("the request is not signed", code="not_signed")
    try:
        timestamp = int(signed.timestamp)
        signature = b64decode(signed.signature)
    except ValueError as error:
        raise AuthenticationRejected("the signature headers are malformed", code="bad_signature") from error
    if len(signature) != SIGNATURE_BYTES or not (8 <= len(signed.nonce) <= 64) or not signed.nonce.isalnum():
        raise AuthenticationRejected("the signature headers are malformed", code="bad_signature")
    skew = settings.TESSERA["SIGNATURE_MAX_SKEW_SECONDS"]
    if abs(now.timestamp() - timestamp) > skew:
        raise AuthenticationRejected(
            f"the request's timestamp is more than {skew} s from the coordinator's clock",
            code="stale_timestamp",
        )
    return timestamp, signed.nonce, signature


def _verify(signed: SignedRequest, public_key: bytes, timestamp: int, nonce: str, signature: bytes) -> None:
    message = signing_message(
        method=signed.method,
        path=signed.path,
        timestamp=timestamp,
        nonce=nonce,
        body_sha256=body_digest(signed.body),
    )
    if not signature_is_valid(public_key, message, signature):
        raise AuthenticationRejected("the signature does not match", code="bad_signature")


# Every signed request reads its host, volunteer and user: compiled once, not each time.
HOST_WITH_USER = CompiledRead(lambda pk: Host.objects.select_related("volunteer__user").filter(pk=pk))


def authenticate_host(*, signed: SignedRequest, now: datetime) -> Host:
    """Check a host's signed request and burn its nonce, so it cannot be replayed."""
    timestamp, nonce, signature = _checked_parts(signed, now)
    host_id = signed.host_id or ""
    if not HOST_ID.fullmatch(host_id):
        raise AuthenticationRejected("the request names no host", code="unknown_host")
    host = HOST_WITH_USER.get(int(host_id))
    if host is None:
        raise AuthenticationRejected("the host is not registered", code="unknown_host")
    _verify(signed, b64decode(host.public_key), timestamp, nonce, signature)
    if not host.volunteer.user.is_active:  # an operator cuts a volunteer off by deactivating the user
        raise AuthenticationRejected("the host's volunteer account is disabled", code="account_disabled")
    _burn_nonce(host, nonce, now)
    return host


# One statement, no transaction of its own: every signed request burns a nonce, and the
# ORM's create in a savepoint cost three round trips and an INSERT compiled each time.
BURN_NONCE = (
    f"INSERT INTO {HostNonce._meta.db_table} (host_id, nonce, seen_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (host_id, nonce) DO NOTHING"
)


def _burn_nonce(host: Host, nonce: str, now: datetime) -> None:
    """Record a nonce once; a second request with it is a replay (the unique pair
    ``host_nonce_once`` inserts nothing)."""
    with prepared_cursor() as cursor:
        cursor.execute(BURN_NONCE, [host.pk, nonce, connection.ops.adapt_datetimefield_value(now)])
        burnt = cursor.rowcount == 1
    if not burnt:
        raise AuthenticationRejected("this request was already received", code="replayed")


def parse_public_key(text: str) -> bytes:
    try:
        key = b64decode(text)
    except ValueError as error:
        raise InvalidInput("public_key must be base64", code="bad_public_key") from error
    if len(key) != PUBLIC_KEY_BYTES:
        raise InvalidInput("public_key must be a 32-byte Ed25519 key", code="bad_public_key")
    return key


@transaction.atomic
def register_host(
    *,
    volunteer: Volunteer,
    signed: SignedRequest,
    public_key: str,
    name: str,
    n_cpus: int,
    memory_bytes: int,
    flops: float,
    description: dict[str, Any],
    now: datetime,
    network: str = "",
) -> tuple[Host, bool]:
    """Register a host key; the request must be signed by that key (proof of possession).

    Registering the same key again for the same volunteer returns the same host, so a
    client that crashed after registering can simply ask again. A new host must claim
    plausible figures, and starts with a small quota (accounts.limits); ``network`` is where
    the request came from (accounts.relation). ``description`` holds the Host fields of what
    it says it is (accounts.host_description.host_fields), its ``platform`` included.
    """
    check_host_figures(n_cpus=n_cpus, flops=flops)
    key = parse_public_key(public_key)
    timestamp, nonce, signature = _checked_parts(signed, now)
    _verify(signed, key, timestamp, nonce, signature)
    existing = Host.objects.filter(public_key=public_key).first()
    if existing is not None:
        if existing.volunteer_id != volunteer.pk:
            raise Conflict("this key is registered to another volunteer", code="key_taken")
        _burn_nonce(existing, nonce, now)
        return existing, False
    list(Volunteer.objects.select_for_update().filter(pk=volunteer.pk).values_list("pk"))
    check_registration_rate(volunteer=volunteer, now=now)
    host = Host.objects.create(
        volunteer=volunteer,
        public_key=public_key,
        name=name,
        n_cpus=n_cpus,
        memory_bytes=memory_bytes,
        flops=flops,
        daily_quota=starting_quota(volunteer=volunteer, now=now),
        registered_network=network,
        network=network,
        last_contact=now,
        **description,
    )
    _burn_nonce(host, nonce, now)
    return host, True


def purge_nonces(*, now: datetime) -> int:
    """Forget nonces older than the signature window: such requests are refused as stale."""
    horizon = now - timedelta(seconds=2 * settings.TESSERA["SIGNATURE_MAX_SKEW_SECONDS"])
    deleted, _ = HostNonce.objects.filter(seen_at__lt=horizon).delete()
    return deleted
