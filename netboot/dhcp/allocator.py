"""Which address a client may have: the full server's decisions, without any I/O.

Given the pool (what exists, who has a reservation), the lease store's view (who holds what,
which offers are pending, what is blocked), a client and the address it asks for, these
functions answer; they never wait, write or log. The state machine in `full.py` acts on the
answers (holds the offer, probes, NAKs), so the rules of RFC 2131 4.3.1 can be tested with a
table of cases instead of a LAN.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from netboot.dhcp.leases import Lease, Offer
from netboot.dhcp.pool import AddressPool


class LeaseView(Protocol):
    """The queries of `LeaseStore` the allocator needs (read-only)."""

    def lease_of(self, client: str) -> Lease | None: ...

    def offer_of(self, client: str, now: float) -> Offer | None: ...

    def free_for(
        self, client: str, address: str, now: float, *, in_use_by_client: bool = False
    ) -> bool: ...

    def never_leased(self, address: str) -> bool: ...

    def expired_since(self, address: str) -> float: ...


@dataclass(frozen=True)
class Client:
    """Who asks: the lease key (option 61 or MAC), the MAC (reservations are by MAC) and
    the address it asked for (option 50), if any."""

    key: str
    mac: str
    requested: IPv4Address | None = None


@dataclass(frozen=True)
class Choice:
    """The address to offer (None: the pool is exhausted for this client); `probe`: it is
    not the client's own yet, so check the LAN first; `reserved_in_use`: the client's
    reserved address, which some other holder has (worth a warning)."""

    address: IPv4Address | None
    probe: bool = False
    reserved_in_use: IPv4Address | None = None


def choose(
    pool: AddressPool,
    leases: LeaseView,
    client: Client,
    now: float,
    exclude: Set[IPv4Address] = frozenset(),
) -> Choice:
    """RFC 2131 4.3.1 order: reservation, current or last binding, pending offer,
    requested address, a never-used address, the longest-expired one. `exclude`: addresses
    already tried for this DISCOVER (they answered an ARP probe)."""
    key, mac = client.key, client.mac

    def usable(address: IPv4Address | None) -> bool:
        return (
            address is not None
            and address not in exclude
            and pool.may_use(address, mac)
            and leases.free_for(key, str(address), now)
        )

    reservation = pool.reservation(mac)
    own = leases.lease_of(key)
    own_address = IPv4Address(own.address) if own is not None else None
    reserved_in_use = None
    if reservation is not None and reservation.address is not None:
        if usable(reservation.address):
            return Choice(reservation.address, reservation.address != own_address)
        reserved_in_use = reservation.address
    if usable(own_address):
        return Choice(own_address, False, reserved_in_use)
    offer = leases.offer_of(key, now)
    if offer is not None and usable(IPv4Address(offer.address)):
        # probed when it was first offered
        return Choice(IPv4Address(offer.address), False, reserved_in_use)
    if usable(client.requested):
        return Choice(client.requested, True, reserved_in_use)
    oldest: tuple[float, IPv4Address] | None = None
    for address in pool.dynamic_addresses():
        if not usable(address):
            continue
        if leases.never_leased(str(address)):
            return Choice(address, True, reserved_in_use)
        expired = leases.expired_since(str(address))
        if oldest is None or expired < oldest[0]:
            oldest = (expired, address)
    if oldest is None:
        return Choice(None, False, reserved_in_use)
    return Choice(oldest[1], True, reserved_in_use)


def refusal(
    pool: AddressPool,
    leases: LeaseView,
    client: Client,
    address: IPv4Address | None,
    now: float,
    *,
    renewing: bool = False,
) -> str | None:
    """Why `client` may not have `address` in a REQUEST (the end of a NAK message), or None
    if it may. A renewing client shows it uses the address, which overrides a block."""
    if address is None or address not in pool.subnet:
        return f"is not on {pool.subnet}"
    if not leases.free_for(client.key, str(address), now, in_use_by_client=renewing):
        return "is not free for this client"
    if not pool.may_use(address, client.mac):
        return "is not in the pool or reserved"
    return None


def address_or_none(value: str | None) -> IPv4Address | None:
    """An address from a packet field; None for empty, 0.0.0.0 or garbage."""
    if not value or value == "0.0.0.0":
        return None
    try:
        return IPv4Address(value)
    except ValueError:
        return None
