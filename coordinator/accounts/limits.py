"""Limits on what one volunteer may register and claim about its hosts.

A volunteer controls any number of hosts and says what each one is: the project bounds
the figures a host may claim (cores, speed), how many hosts a volunteer may register a
day, and the quota a new host starts with, so that registering another host never sheds
the quota a caught one earned (docs/validation.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from coordinator.accounts.models import Host, Volunteer
from coordinator.accounts.relation import burst_of, network_of
from coordinator.core.errors import InvalidInput, LimitReached

DAY = timedelta(days=1)


def check_host_figures(*, n_cpus: int | None = None, flops: float | None = None) -> None:
    """Refuse cores or a per-core speed beyond the project's plausible bounds."""
    limits = settings.TESSERA
    if n_cpus is not None and n_cpus > limits["MAX_HOST_CPUS"]:
        raise InvalidInput(
            f"n_cpus {n_cpus} is more than this project accepts ({limits['MAX_HOST_CPUS']})",
            code="implausible_host",
        )
    if flops is not None and flops > limits["MAX_HOST_FLOPS"]:
        raise InvalidInput(
            f"flops {flops:g} per core is more than this project accepts ({limits['MAX_HOST_FLOPS']:g})",
            code="implausible_host",
        )


def check_registration_rate(*, volunteer: Volunteer, now: datetime) -> None:
    """At most ``MAX_HOSTS_PER_DAY`` new hosts per volunteer in any 24 hours."""
    most = settings.TESSERA["MAX_HOSTS_PER_DAY"]
    recent = list(
        Host.objects.filter(volunteer=volunteer, created__gt=now - DAY)
        .order_by("created")
        .values_list("created", flat=True)
    )
    if len(recent) >= most:
        wait = max(1, int((recent[len(recent) - most] + DAY - now).total_seconds()))
        raise LimitReached(
            f"this account registered {len(recent)} hosts in the last 24 hours, the most allowed; "
            "try again later",
            code="too_many_hosts",
            retry_after=wait,
        )


def starting_quota(*, volunteer: Volunteer, now: datetime) -> int:
    """The daily quota a new host's app versions start with: small, and 1 while any host of
    the volunteer was caught cheating within ``CAUGHT_MEMORY_DAYS``."""
    memory = timedelta(days=settings.TESSERA["CAUGHT_MEMORY_DAYS"])
    if Host.objects.filter(volunteer=volunteer, caught_at__gt=now - memory).exists():
        return 1
    return settings.TESSERA["NEW_HOST_DAILY_QUOTA"]


def record_signup(*, volunteer: Volunteer, address: str, now: datetime) -> None:
    """Remember where and when a volunteer signed up themselves, so that accounts made
    together from one network or in one burst are related (accounts.relation)."""
    Volunteer.objects.filter(pk=volunteer.pk).update(
        signup_network=network_of(address),
        signup_burst=burst_of(now.timestamp(), settings.TESSERA["SIGNUP_BURST_SECONDS"]),
    )
