"""`[dhcp.subnets]`: pools of relayed subnets for full DHCP, checked at start (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from netboot import config as config_mod
from netboot.dhcp.pool import build_pool
from netboot.dhcp.subnets import Segment, relayed_segments, segment_for

LOCAL = IPv4Interface("10.0.0.1/24")
S = "dhcp.subnets.10.1.2.0/24"
RELAYED = {"range_start": "10.1.2.100", "range_end": "10.1.2.199", "router": "10.1.2.1"}


def segments(subnets: dict[str, Any]) -> tuple[Segment, list[Segment]]:
    config = config_mod.parse({"dhcp": {"subnets": subnets, "dns": ["10.0.0.53"]}}, "t.toml")
    pool = build_pool(config, "10.0.0.1", LOCAL)
    local = Segment(pool, None, relayed=False)  # type: ignore[arg-type]
    return local, relayed_segments(config, pool)


def test_a_relayed_request_gets_the_pool_of_its_relays_subnet() -> None:
    local, relayed = segments({"10.1.2.0/24": RELAYED})
    (segment,) = relayed
    assert segment.relayed and segment.pool.describe() == "10.1.2.100-10.1.2.199 in 10.1.2.0/24"
    assert segment.settings.router == "10.1.2.1" and segment.settings.dns == ("10.0.0.53",)
    assert segment_for("10.1.2.1", local, relayed) is segment
    assert segment_for("0.0.0.0", local, relayed) is local
    assert segment_for("10.0.0.254", local, relayed) is local  # a relay on our own subnet
    assert segment_for("10.9.9.1", local, relayed) is None
    assert next(segment.pool.dynamic_addresses()) == IPv4Address("10.1.2.100")


@pytest.mark.parametrize(
    ("subnets", "key", "problem"),
    [
        ({"10.1.2.0/33": RELAYED}, "dhcp.subnets.10.1.2.0/33", "must be a subnet"),
        ({"10.0.0.0/16": RELAYED}, "dhcp.subnets.10.0.0.0/16", "overlaps 10.0.0.0/24"),
        ({"10.1.2.0/24": {**RELAYED, "range_end": "10.1.3.5"}}, f"{S}.range_end",
         "not a host address"),
        ({"10.1.2.0/24": {"range_start": "10.1.2.9"}}, f"{S}.range_start",
         "range_start <= range_end"),
        ({"10.1.2.0/24": {**RELAYED, "router": "10.0.0.1"}}, f"{S}.router",
         "not a host address"),
        ({"10.1.2.0/24": {**RELAYED, "gateway": "x"}}, f"{S}.gateway",
         "unknown key"),
    ],
)  # fmt: skip
def test_bad_subnets_name_the_key(subnets: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(config_mod.ConfigError) as caught:
        segments(subnets)
    assert caught.value.key == key and problem in str(caught.value), str(caught.value)
