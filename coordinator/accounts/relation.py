"""Which hosts may not check each other's work: pure rules, no ORM.

A volunteer controls any number of accounts and hosts, so "another volunteer" is not proof
of independence. Two hosts are *related* when they share the account, a network (IPv4 /24
or IPv6 /48, where they registered or last called from, or where their accounts signed
up), or a sign-up burst (accounts made within the same short window). Related hosts never
hold replicas of one unit, and their agreement earns no trust (docs/validation.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPV4_PREFIX = 24
IPV6_PREFIX = 48


def network_of(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) around ``address``; "" when it names no network that
    tells hosts apart: unparsable, unspecified or loopback (the same machine as the
    coordinator, as in development and tests)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return ""
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def burst_of(timestamp: float, window_seconds: int) -> str:
    """The sign-up burst a moment falls in: windows of ``window_seconds``; "" when off."""
    if window_seconds <= 0:
        return ""
    return str(int(timestamp // window_seconds))


@dataclass(frozen=True)
class Holder:
    """What relates a host to others: its volunteer, its networks, its sign-up burst."""

    host_id: int
    volunteer_id: int
    networks: frozenset[str] = frozenset()
    burst: str = ""

    @classmethod
    def of(
        cls,
        *,
        host_id: int,
        volunteer_id: int,
        network: str = "",
        registered_network: str = "",
        signup_network: str = "",
        signup_burst: str = "",
    ) -> Holder:
        nets = frozenset(n for n in (network, registered_network, signup_network) if n)
        return cls(host_id, volunteer_id, nets, signup_burst)


def related(a: Holder, b: Holder) -> bool:
    """Whether ``a`` and ``b`` may be one party: same account, network or sign-up burst."""
    return (
        a.volunteer_id == b.volunteer_id
        or bool(a.networks & b.networks)
        or (a.burst != "" and a.burst == b.burst)
    )


def related_to_any(holder: Holder, others: list[Holder]) -> bool:
    return any(related(holder, other) for other in others if other.host_id != holder.host_id)
