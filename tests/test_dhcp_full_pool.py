"""The pool of full mode: defaults from the interface, and config errors that name the key."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from netboot import config as config_mod
from netboot.config import ConfigError
from netboot.dhcp.pool import AddressPool, build_pool


def pool_for(interface: str, **dhcp: Any) -> AddressPool:
    config = config_mod.parse({"dhcp": dhcp}, "netboot.toml")
    network = IPv4Interface(interface)
    return build_pool(config, str(network.ip), network)


def test_default_pool_is_the_upper_half_without_broadcast_or_server() -> None:
    pool = pool_for("192.168.7.1/24")
    assert (str(pool.start), str(pool.end)) == ("192.168.7.128", "192.168.7.254")
    # the server itself in the upper half is never handed out
    pool = pool_for("192.168.7.200/24")
    addresses = list(pool.dynamic_addresses())
    assert IPv4Address("192.168.7.200") not in addresses and len(addresses) == 126
    pool = pool_for("10.1.0.5/16")
    assert (str(pool.start), str(pool.end)) == ("10.1.128.0", "10.1.255.254")


def test_netmask_setting_overrides_the_interface() -> None:
    pool = pool_for("10.2.3.4/16", netmask="255.255.255.0")
    assert str(pool.subnet) == "10.2.3.0/24" and str(pool.start) == "10.2.3.128"


@pytest.mark.parametrize(
    ("interface", "dhcp", "key", "problem"),
    [
        (
            "10.0.0.1/24",
            {"range_start": "10.0.1.10", "range_end": "10.0.1.20"},
            "dhcp.range_start",
            "outside the subnet 10.0.0.0/24",
        ),
        (
            "10.0.0.1/24",
            {"range_start": "10.0.0.10", "range_end": "10.0.1.20"},
            "dhcp.range_end",
            "outside",
        ),
        (
            "10.0.0.1/24",
            {"range_start": "10.0.0.50", "range_end": "10.0.0.40"},
            "dhcp.range_start",
            "comes after range_end",
        ),
        ("10.0.0.1/24", {"range_start": "10.0.0.50"}, "dhcp.range_end", "must be set"),
        (
            "10.0.0.1/24",
            {"range_start": "10.0.0.0", "range_end": "10.0.0.9"},
            "dhcp.range_start",
            "network or broadcast",
        ),
        ("10.0.0.1/31", {}, "dhcp.range_start", "too small"),
        ("10.0.0.1/24", {"router": "10.9.9.9"}, "dhcp.router", "outside"),
        ("10.0.0.1/24", {"netmask": "255.0.255.0"}, "dhcp.netmask", "not a netmask"),
        (
            "10.0.0.1/24",
            {"reservations": {"52:54:00:00:00:01": {"address": "10.0.0.1"}}},
            "dhcp.reservations.52:54:00:00:00:01.address",
            "server's own address",
        ),
        (
            "10.0.0.1/24",
            {"reservations": {"52:54:00:00:00:01": {"address": "10.7.0.1"}}},
            "dhcp.reservations.52:54:00:00:00:01.address",
            "not a host address",
        ),
        (
            "10.0.0.1/24",
            {
                "reservations": {
                    "52:54:00:00:00:01": {"address": "10.0.0.9"},
                    "52:54:00:00:00:02": {"address": "10.0.0.9"},
                }
            },
            "dhcp.reservations.52:54:00:00:00:02.address",
            "also reserved",
        ),
    ],
)
def test_bad_pool_settings_name_the_key(
    interface: str, dhcp: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        pool_for(interface, **dhcp)
    assert caught.value.key == key
    assert problem in str(caught.value) and "netboot.toml" in str(caught.value)


def test_reserved_addresses_are_only_for_their_owner() -> None:
    owner = "52:54:00:00:00:01"
    pool = pool_for(
        "10.0.0.1/24",
        range_start="10.0.0.100",
        range_end="10.0.0.102",
        reservations={
            owner: {"address": "10.0.0.101", "hostname": "pc01"},
            "52:54:00:00:00:02": {"address": "10.0.0.20"},
        },
    )
    assert [str(a) for a in pool.dynamic_addresses()] == ["10.0.0.100", "10.0.0.102"]
    assert pool.may_use(IPv4Address("10.0.0.101"), owner)
    assert not pool.may_use(IPv4Address("10.0.0.101"), "52:54:00:00:00:03")
    # a reservation outside the dynamic range is still the owner's
    assert pool.may_use(IPv4Address("10.0.0.20"), "52:54:00:00:00:02")
    assert not pool.may_use(IPv4Address("10.0.0.20"), owner)
    assert not pool.may_use(IPv4Address("10.0.0.50"), owner)  # neither reserved nor in range
    assert pool.reservation(owner).hostname == "pc01"
