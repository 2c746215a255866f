"""The address pool of the full DHCP server: which addresses exist, and which MAC owns which.

Everything here is derived once from the `[dhcp]` config and the serving interface, and
checked then: a pool outside the interface's subnet, a range that runs backwards or a
reservation on the server's own address is a ConfigError naming the key, before any packet
is answered. What is *free* at a given moment is the lease store's business, not the pool's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from netboot.config import Config, ConfigError


@dataclass(frozen=True)
class Reservation:
    """A fixed address and/or hostname for one MAC (`[dhcp.reservations]`)."""

    mac: str
    address: IPv4Address | None
    hostname: str


@dataclass(frozen=True)
class AddressPool:
    """The local subnet, the dynamic range inside it and the reservations."""

    subnet: IPv4Network
    start: IPv4Address
    end: IPv4Address
    server_ip: IPv4Address
    reservations: dict[str, Reservation] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def in_subnet(self, address: IPv4Address) -> bool:
        """A usable host address of the subnet (not network, broadcast or the server)."""
        return (
            address in self.subnet
            and address not in (self.subnet.network_address, self.subnet.broadcast_address)
            and address != self.server_ip
        )

    def in_range(self, address: IPv4Address) -> bool:
        return self.start <= address <= self.end and self.in_subnet(address)

    def reservation(self, mac: str) -> Reservation | None:
        return self.reservations.get(mac)

    def reserved_for(self, address: IPv4Address) -> str | None:
        """The MAC an address is reserved for, if any."""
        for reservation in self.reservations.values():
            if reservation.address == address:
                return reservation.mac
        return None

    def may_use(self, address: IPv4Address, mac: str) -> bool:
        """May this MAC hold this address at all: its own reservation, or a dynamic address
        nobody has reserved."""
        owner = self.reserved_for(address)
        if owner is not None:
            return owner == mac and self.in_subnet(address)
        return self.in_range(address)

    def dynamic_addresses(self) -> Iterator[IPv4Address]:
        """Addresses of the range that anyone may get, lowest first."""
        reserved = {r.address for r in self.reservations.values() if r.address is not None}
        for value in range(int(self.start), int(self.end) + 1):
            address = IPv4Address(value)
            if address not in reserved and self.in_subnet(address):
                yield address

    def describe(self) -> str:
        return f"{self.start}-{self.end} in {self.subnet}"


def default_range(subnet: IPv4Network) -> tuple[IPv4Address, IPv4Address] | None:
    """The upper half of the subnet without its broadcast address (a /24 gives .128-.254),
    or None when the subnet has no room for a pool (/31, /32)."""
    if subnet.num_addresses < 4:
        return None
    first = subnet.network_address + subnet.num_addresses // 2
    last = subnet.broadcast_address - 1
    return first, last


def build_pool(config: Config, server_ip: str, network: IPv4Interface) -> AddressPool:
    """Derive the pool from `[dhcp]` and the interface; raise ConfigError naming the key."""
    dhcp = config.dhcp
    source = config.source
    server = IPv4Address(server_ip)
    netmask = dhcp.netmask or str(network.netmask)
    try:
        subnet = IPv4Network(f"{server}/{netmask}", strict=False)
    except ValueError:
        raise ConfigError("dhcp.netmask", source, f"{netmask!r} is not a netmask") from None
    where = f"the subnet {subnet} of {server}"

    start_text, end_text = dhcp.range_start, dhcp.range_end
    if bool(start_text) != bool(end_text):
        missing = "dhcp.range_end" if start_text else "dhcp.range_start"
        other = "range_start" if start_text else "range_end"
        raise ConfigError(missing, source, f"must be set when {other} is")
    if start_text:
        start, end = IPv4Address(start_text), IPv4Address(end_text)
    else:
        default = default_range(subnet)
        if default is None:
            raise ConfigError(
                "dhcp.range_start", source, f"{where} is too small for a default pool; set a range"
            )
        start, end = default
    for key, address in (("dhcp.range_start", start), ("dhcp.range_end", end)):
        if address not in subnet:
            raise ConfigError(key, source, f"{address} is outside {where}")
        if address in (subnet.network_address, subnet.broadcast_address):
            raise ConfigError(key, source, f"{address} is the network or broadcast address")
    if start > end:
        raise ConfigError("dhcp.range_start", source, f"{start} comes after range_end {end}")
    if start == end == server:
        raise ConfigError("dhcp.range_start", source, "the pool holds only the server's address")

    router = dhcp.router
    if router and IPv4Address(router) not in subnet:
        raise ConfigError("dhcp.router", source, f"{router} is outside {where}")

    reservations: dict[str, Reservation] = {}
    taken: dict[IPv4Address, str] = {}
    for mac, entry in dhcp.reservations.items():
        key = f"dhcp.reservations.{mac}.address"
        address = IPv4Address(entry["address"]) if entry.get("address") else None
        if address is not None:
            if address not in subnet or address in (
                subnet.network_address,
                subnet.broadcast_address,
            ):
                raise ConfigError(key, source, f"{address} is not a host address of {where}")
            if address == server:
                raise ConfigError(key, source, f"{address} is the server's own address")
            if address in taken:
                raise ConfigError(key, source, f"{address} is also reserved for {taken[address]}")
            taken[address] = mac
        reservations[mac] = Reservation(mac, address, entry.get("hostname", ""))
    return AddressPool(subnet, start, end, server, reservations)
