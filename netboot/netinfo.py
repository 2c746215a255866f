"""Interface discovery: which interface and address to serve on when none is given."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import netifaces

from netboot.errors import UserError


class InterfaceError(UserError):
    """No usable interface/address; str() is the one line shown to the user."""


@dataclass(frozen=True)
class InterfaceInfo:
    name: str
    address: str
    network: ipaddress.IPv4Interface  # address/prefix
    mac: str

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)

    @property
    def broadcast(self) -> str:
        return str(self.network.network.broadcast_address)


def default_route_interface() -> str | None:
    gateway = netifaces.gateways().get("default", {}).get(netifaces.AF_INET)
    return gateway[1] if gateway else None


def _ipv4_entries(name: str) -> list[dict]:
    try:
        return netifaces.ifaddresses(name).get(netifaces.AF_INET, [])
    except ValueError:
        raise InterfaceError(f"no such interface: {name}") from None


def describe(name: str, address: str = "") -> InterfaceInfo:
    """The interface's IPv4 address (the given one if it is on the interface)."""
    entries = _ipv4_entries(name)
    if not entries:
        raise InterfaceError(f"interface {name} has no IPv4 address")
    chosen = entries[0]
    if address:
        matches = [e for e in entries if e.get("addr") == address]
        if matches:
            chosen = matches[0]
        else:
            # advertised address not on this interface (NAT, a VIP): keep the prefix of the first
            chosen = {"addr": address, "netmask": entries[0].get("netmask", "255.255.255.0")}
    links = netifaces.ifaddresses(name).get(netifaces.AF_LINK, [{}])
    mac = links[0].get("addr", "") if links else ""
    network = ipaddress.IPv4Interface(f"{chosen['addr']}/{chosen.get('netmask', '255.255.255.0')}")
    return InterfaceInfo(name, chosen["addr"], network, mac)


def interface_networks(name: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets on `name` now (all its addresses; none if it is gone)."""
    try:
        entries = _ipv4_entries(name)
    except InterfaceError:
        return []
    return [
        ipaddress.IPv4Interface(f"{e['addr']}/{e.get('netmask', '255.255.255.255')}").network
        for e in entries
        if e.get("addr")
    ]


def pick_interface(name: str = "", address: str = "") -> InterfaceInfo:
    """The named interface, else the default route's, else the only non-loopback one with an
    IPv4 address (a lab LAN often has no default route)."""
    if name:
        return describe(name, address)
    default = default_route_interface()
    if default:
        return describe(default, address)
    candidates = [n for n in netifaces.interfaces() if n != "lo" and _ipv4_entries(n)]
    if len(candidates) == 1:
        return describe(candidates[0], address)
    if not candidates:
        raise InterfaceError("no interface with an IPv4 address; give --interface")
    raise InterfaceError(
        f"no default route and several interfaces ({', '.join(candidates)}); give --interface"
    )
