"""BOINC account keys and BOINC access (docs/boinc.md, "Accounts").

A BOINC client attaches with an account key and sends it, in clear, in every scheduler
request: it is a bearer credential. Ours are 32 hex characters like BOINC's own, kept as their
SHA-256, each revocable, and separate from the Tessera account token. A volunteer can also
attach from the BOINC Manager with email and password: the Manager sends BOINC's
``md5(password + lowercase(email))`` to lookup_account.php, so the project keeps a verifier of
that value, but only for volunteers who turned BOINC access on. Each lookup hands out a new
key, since the keys are not kept.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction

from coordinator.accounts import services as account_services
from coordinator.accounts.models import Volunteer
from coordinator.boinc.models import BoincAccess, BoincAccountKey
from coordinator.core.errors import AuthenticationRejected, Conflict, InvalidInput, PermissionRefused

MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
MAX_KEY_LENGTH = 256  # what the BOINC client accepts as an account key
MAX_KEYS = 20  # live keys per volunteer: lookups mint one each, the oldest are revoked beyond


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def passwd_hash(password: str, email: str) -> str:
    """What a BOINC client sends for a password (``get_passwd_hash`` in BOINC's GUI RPC code)."""
    return hashlib.md5((password + email.lower()).encode(), usedforsecurity=False).hexdigest()


def issue_key(*, volunteer: Volunteer, now: datetime, issued_by: str) -> str:
    """A new account key for ``volunteer`` (shown once); beyond MAX_KEYS live ones, the oldest
    stop working."""
    key = secrets.token_hex(16)
    with transaction.atomic():
        BoincAccountKey.objects.create(
            volunteer=volunteer, key_hash=hash_key(key), created=now, issued_by=issued_by
        )
        live = BoincAccountKey.objects.filter(volunteer=volunteer, revoked=None).order_by("-created", "-id")
        stale = list(live.values_list("id", flat=True)[MAX_KEYS:])
        BoincAccountKey.objects.filter(id__in=stale).update(revoked=now)
    return key


def revoke_keys(*, volunteer: Volunteer, now: datetime) -> int:
    """Every BOINC key of the volunteer stops working: its BOINC clients must attach again."""
    return BoincAccountKey.objects.filter(volunteer=volunteer, revoked=None).update(revoked=now)


def key_holder(key: str) -> BoincAccountKey:
    """The live key row for ``key`` (with its volunteer), or AuthenticationRejected."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise AuthenticationRejected("Invalid or missing account key.")
    row = (
        BoincAccountKey.objects.select_related("volunteer__user")
        .filter(key_hash=hash_key(key), revoked=None)
        .first()
    )
    if row is None or not row.volunteer.user.is_active:
        raise AuthenticationRejected("Invalid or missing account key.")
    return row


def enable_access(*, volunteer: Volunteer, password: str, now: datetime) -> str:
    """Turn BOINC access on: with the volunteer's password (checked), keep the verifier of the
    hash a BOINC client sends, and hand out a first key."""
    user = volunteer.user
    if not user.check_password(password):
        raise AuthenticationRejected("the password is wrong", code="bad_password")
    verifier = make_password(passwd_hash(password, user.email)) if user.email else ""
    BoincAccess.objects.update_or_create(
        volunteer=volunteer, defaults={"passwd_verifier": verifier, "enabled": now}
    )
    return issue_key(volunteer=volunteer, now=now, issued_by="account page")


def disable_access(*, volunteer: Volunteer, now: datetime) -> None:
    """Turn BOINC access off: the verifier is dropped and every key stops working."""
    BoincAccess.objects.filter(volunteer=volunteer).delete()
    revoke_keys(volunteer=volunteer, now=now)


def lookup_account(*, email: str, hashed: str, now: datetime) -> str:
    """lookup_account.php: a new key for the volunteer with this email whose BOINC password
    hash matches. The same refusal whether the account is missing or the hash is wrong, so the
    endpoint does not tell which emails have accounts."""
    hashed = hashed.strip().lower()
    if not MD5_HEX.match(hashed):
        raise InvalidInput("passwd_hash must be 32 hex characters")
    users = get_user_model().objects.filter(email__iexact=email.strip(), is_active=True)
    access = BoincAccess.objects.filter(volunteer__user__in=users).exclude(passwd_verifier="").first()
    if access is None or not check_password(hashed, access.passwd_verifier):
        raise AuthenticationRejected("wrong email or password, or BOINC access is off for this account")
    return issue_key(volunteer=access.volunteer, now=now, issued_by="lookup_account.php")


def create_account(*, email: str, hashed: str, user_name: str, now: datetime) -> str:
    """create_account.php: a new volunteer with BOINC access, if the project takes sign-ups.
    A BOINC client never sends the password itself, so the account has no Tessera password
    until the volunteer sets one; it signs in with BOINC's credential only."""
    if not settings.TESSERA["SIGNUP_OPEN"]:
        raise PermissionRefused("this project takes no new accounts now", code="signup_closed")
    hashed = hashed.strip().lower()
    if not MD5_HEX.match(hashed):
        raise InvalidInput("passwd_hash must be 32 hex characters")
    email = email.strip()
    if "@" not in email or len(email) > 254:
        raise InvalidInput("that is not an email address", code="bad_email")
    if get_user_model().objects.filter(email__iexact=email).exists():
        raise Conflict("an account with this email exists already", code="email_taken")
    with transaction.atomic():
        volunteer, _ = account_services.create_volunteer(
            username=user_name, password=None, email=email, now=now
        )
        BoincAccess.objects.create(volunteer=volunteer, passwd_verifier=make_password(hashed), enabled=now)
        return issue_key(volunteer=volunteer, now=now, issued_by="create_account.php")
