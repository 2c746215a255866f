"""The full server's address choice as pure functions: no sockets, no files, no root."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from netboot.dhcp.allocator import Client, address_or_none, choose, refusal
from netboot.dhcp.leases import LeaseStore
from netboot.dhcp.pool import AddressPool, Reservation

NOW = 1_700_000_000.0
A = Client("mac:52:54:00:00:00:0a", "52:54:00:00:00:0a")
B = Client("mac:52:54:00:00:00:0b", "52:54:00:00:00:0b")
RESERVED = Client("mac:52:54:00:00:00:99", "52:54:00:00:00:99")


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.0.0.{last}")


def make_pool(start: int = 100, end: int = 103, **reserved: int) -> AddressPool:
    """10.0.0.0/24, server .1, range .start-.end; reserved: mac-suffix -> last octet."""
    reservations = {
        f"52:54:00:00:00:{suffix}": Reservation(f"52:54:00:00:00:{suffix}", ip(last), "")
        for suffix, last in reserved.items()
    }
    return AddressPool(IPv4Network("10.0.0.0/24"), ip(start), ip(end), ip(1), reservations)


@pytest.fixture
def leases() -> LeaseStore:
    return LeaseStore(Path("/nonexistent/leases.json"))  # memory only: never loaded or saved


def test_first_free_address_of_the_range(leases: LeaseStore) -> None:
    choice = choose(make_pool(), leases, A, NOW)
    assert choice.address == ip(100)
    assert choice.probe  # not the client's own yet


def test_requested_address_is_honoured_when_free(leases: LeaseStore) -> None:
    client = Client(A.key, A.mac, requested=ip(102))
    assert choose(make_pool(), leases, client, NOW).address == ip(102)


def test_requested_address_outside_the_range_or_taken_is_not(leases: LeaseStore) -> None:
    leases.bind(B.key, B.mac, str(ip(102)), NOW + 600, "")
    for requested in (ip(102), ip(50), ip(255)):
        client = Client(A.key, A.mac, requested=requested)
        assert choose(make_pool(), leases, client, NOW).address == ip(100)


def test_own_lease_comes_first_and_needs_no_probe(leases: LeaseStore) -> None:
    leases.bind(A.key, A.mac, str(ip(103)), NOW + 600, "")
    client = Client(A.key, A.mac, requested=ip(101))
    choice = choose(make_pool(), leases, client, NOW)
    assert (choice.address, choice.probe) == (ip(103), False)


def test_expired_lease_is_remembered_for_its_client(leases: LeaseStore) -> None:
    leases.bind(A.key, A.mac, str(ip(102)), NOW - 10, "")
    assert choose(make_pool(), leases, A, NOW).address == ip(102)
    # another client gets never-used addresses first
    assert choose(make_pool(), leases, B, NOW).address == ip(100)


def test_reserved_address_goes_to_its_owner_only(leases: LeaseStore) -> None:
    pool = make_pool(**{"99": 101})
    choice = choose(pool, leases, RESERVED, NOW)
    assert (choice.address, choice.probe) == (ip(101), True)
    assert choose(pool, leases, A, NOW).address == ip(100)
    leases.hold_offer(A.key, str(ip(100)), NOW + 60)
    assert choose(pool, leases, B, NOW).address == ip(102)  # .101 is skipped


def test_reserved_address_outside_the_range(leases: LeaseStore) -> None:
    choice = choose(make_pool(**{"99": 20}), leases, RESERVED, NOW)
    assert choice.address == ip(20)


def test_reserved_address_in_use_falls_back_to_the_pool(leases: LeaseStore) -> None:
    leases.bind(B.key, B.mac, str(ip(101)), NOW + 600, "")  # e.g. from before the reservation
    choice = choose(make_pool(**{"99": 101}), leases, RESERVED, NOW)
    assert choice.address == ip(100)
    assert choice.reserved_in_use == ip(101)


def test_blocked_and_declined_addresses_are_skipped(leases: LeaseStore) -> None:
    leases.block(str(ip(100)), NOW + 600, "declined by someone")
    assert choose(make_pool(), leases, A, NOW).address == ip(101)
    leases.block(str(ip(101)), NOW - 1, "a block that has run out")
    assert choose(make_pool(), leases, A, NOW).address == ip(101)


def test_addresses_tried_in_this_discover_are_excluded(leases: LeaseStore) -> None:
    assert choose(make_pool(), leases, A, NOW, {ip(100), ip(101)}).address == ip(102)


def test_offer_held_for_another_client_is_not_offered(leases: LeaseStore) -> None:
    leases.hold_offer(A.key, str(ip(100)), NOW + 60)
    assert choose(make_pool(), leases, B, NOW).address == ip(101)
    # A gets its pending offer again, already probed
    choice = choose(make_pool(), leases, A, NOW)
    assert (choice.address, choice.probe) == (ip(100), False)
    # once the hold has run out, the address is free for B
    assert choose(make_pool(), leases, B, NOW + 61).address == ip(100)


def test_exhaustion_then_the_longest_expired_lease(leases: LeaseStore) -> None:
    pool = make_pool(100, 101)
    leases.bind(B.key, B.mac, str(ip(100)), NOW + 600, "")
    leases.bind("mac:c", "52:54:00:00:00:0c", str(ip(101)), NOW + 600, "")
    choice = choose(pool, leases, A, NOW)
    assert choice.address is None and not choice.probe
    # both leases expire; the one that expired first is reused first
    leases.bind(B.key, B.mac, str(ip(100)), NOW - 50, "")
    leases.bind("mac:c", "52:54:00:00:00:0c", str(ip(101)), NOW - 100, "")
    assert choose(pool, leases, A, NOW).address == ip(101)


def test_server_address_in_the_range_is_never_chosen(leases: LeaseStore) -> None:
    pool = AddressPool(IPv4Network("10.0.0.0/24"), ip(1), ip(2), ip(1))
    assert choose(pool, leases, A, NOW).address == ip(2)


def test_refusal_reasons(leases: LeaseStore) -> None:
    pool = make_pool(**{"99": 101})
    assert refusal(pool, leases, A, ip(100), NOW) is None
    assert refusal(pool, leases, A, None, NOW) == "is not on 10.0.0.0/24"
    assert refusal(pool, leases, A, IPv4Address("10.1.0.5"), NOW) == "is not on 10.0.0.0/24"
    assert refusal(pool, leases, A, ip(101), NOW) == "is not in the pool or reserved"
    assert refusal(pool, leases, A, ip(50), NOW) == "is not in the pool or reserved"
    assert refusal(pool, leases, RESERVED, ip(101), NOW) is None
    leases.bind(B.key, B.mac, str(ip(102)), NOW + 600, "")
    assert refusal(pool, leases, A, ip(102), NOW) == "is not free for this client"
    assert refusal(pool, leases, B, ip(102), NOW) is None


def test_a_renewal_overrides_a_block(leases: LeaseStore) -> None:
    leases.block(str(ip(100)), NOW + 600, "in use (answered an ARP probe)")
    assert refusal(make_pool(), leases, A, ip(100), NOW) == "is not free for this client"
    assert refusal(make_pool(), leases, A, ip(100), NOW, renewing=True) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("0.0.0.0", None), ("bogus", None), ("10.0.0.7", ip(7))],
)
def test_address_or_none(value: str | None, expected: IPv4Address | None) -> None:
    assert address_or_none(value) == expected
