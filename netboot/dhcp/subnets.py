"""Full DHCP for clients behind relay agents: one pool per relayed subnet.

`[dhcp.subnets."10.1.2.0/24"]` gives the range (and router, DNS, domain) of a subnet that
reaches us through a relay; a relayed request is served from the subnet holding its giaddr
(RFC 2131 4.3.1), the local pool serves the rest. Checked once at start: a range outside
its subnet or a subnet overlapping another is a ConfigError naming the key. Addresses of a
relayed subnet are never ARP-probed (they are not on our link).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from netboot.config import Config, ConfigError
from netboot.dhcp.pool import AddressPool
from netboot.dhcp.replies import Settings


@dataclass(frozen=True)
class Segment:
    """One subnet this server hands out addresses on: its pool and reply settings."""

    pool: AddressPool
    settings: Settings
    relayed: bool


def relayed_segments(config: Config, local: AddressPool) -> list[Segment]:
    """The `[dhcp.subnets]` pools, each checked; hostname-only reservations apply in all."""
    dhcp, source = config.dhcp, config.source
    named = {mac: r for mac, r in local.reservations.items() if r.address is None}
    segments: list[Segment] = []
    for name, spec in dhcp.subnets.items():
        key = f"dhcp.subnets.{name}"
        try:
            subnet = IPv4Network(name)
        except ValueError:
            raise ConfigError(key, source, "must be a subnet such as 10.1.2.0/24") from None
        for other in [local.subnet, *(s.pool.subnet for s in segments)]:
            if subnet.overlaps(other):
                raise ConfigError(key, source, f"overlaps {other}")
        start, end = (_address_in(subnet, spec, k, f"{key}.{k}", source) for k in RANGE)
        if start is None or end is None or start > end:
            raise ConfigError(f"{key}.range_start", source, "needs range_start <= range_end")
        router = _address_in(subnet, spec, "router", f"{key}.router", source)
        pool = AddressPool(subnet, start, end, local.server_ip, named)
        settings = Settings(
            str(local.server_ip),
            subnet,
            int(dhcp.lease_time),
            str(router or ""),
            tuple(spec.get("dns") or dhcp.dns or ()),
            spec.get("domain") or dhcp.domain or "",
        )
        segments.append(Segment(pool, settings, relayed=True))
    return segments


RANGE = ("range_start", "range_end")


def _address_in(
    subnet: IPv4Network, spec: dict[str, Any], item: str, key: str, source: str
) -> IPv4Address | None:
    text = spec.get(item, "")
    if not text:
        return None
    address = IPv4Address(text)
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise ConfigError(key, source, f"{address} is not a host address of {subnet}")
    return address


def segment_for(giaddr: str, local: Segment, relayed: list[Segment]) -> Segment | None:
    """The segment a request belongs to: local without a relay or for a relay on our own
    subnet, else the relayed subnet holding giaddr; None when no pool serves it."""
    if giaddr in ("", "0.0.0.0"):
        return local
    relay = IPv4Address(giaddr)
    return next((s for s in [local, *relayed] if relay in s.pool.subnet), None)
