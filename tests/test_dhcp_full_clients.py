"""Full DHCP with real clients: busybox udhcpc and ISC dhclient in their own namespaces."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path

import pytest

from testbed.bridge_lan import SERVER_IP, BridgeLan, Client
from testbed.dhcp_clients import bound_address, dhclient, parse_events, start_udhcpc, udhcpc
from testbed.full_dhcp import full_config, serving
from testbed.poll import until

pytestmark = pytest.mark.netns  # each test on its own `bridge_lan`


def saved_leases(tmp_path: Path) -> dict[str, str]:
    """mac -> address of the leases in the lease file."""
    data = json.loads((tmp_path / "leases.json").read_text())
    return {lease["mac"]: lease["address"] for lease in data["leases"]}


def squat(bridge_lan: BridgeLan, address: str) -> Client:
    """A machine that uses `address` without asking any DHCP server."""
    squatter = bridge_lan.client("squat")
    squatter.ns.ip("addr", "add", f"{address}/24", "dev", squatter.interface)
    return squatter


async def test_udhcpc_and_dhclient_get_distinct_leases(
    bridge_lan: BridgeLan, tmp_path: Path
) -> None:
    busybox, isc = bridge_lan.client("bb"), bridge_lan.client("isc")
    config = full_config(
        tmp_path,
        "10.99.0.100",
        "10.99.0.110",
        router="10.99.0.1",
        dns=["10.99.0.1", "10.99.0.2"],
        domain="lab",
        lease_time=600,
        reservations={busybox.mac: {"address": "", "hostname": "bbox"}},
    )
    async with serving(bridge_lan, config) as server:
        code, events = await udhcpc(tmp_path, busybox)
        assert code == 0
        bound = next(e for e in events if e["event"] == "bound")
        assert bound["ip"] == "10.99.0.100" and bound["mask"] == "24"
        assert bound["router"] == "10.99.0.1" and bound["domain"] == "lab"
        assert bound["lease"] == "600" and bound["serverid"] == SERVER_IP
        assert bound["hostname"] == "bbox" and bound["broadcast"] == "10.99.0.255"

        out = tmp_path / "dhclient.log"
        assert await dhclient(tmp_path, isc, out, "-1") == 0
        events = parse_events(out)
        bound = next(e for e in events if e["event"] in ("BOUND", "REBOOT"))
        assert bound["ip"] == "10.99.0.101" and bound["mask"] == "255.255.255.0"
        assert bound["serverid"] == SERVER_IP
        assert saved_leases(tmp_path) == {busybox.mac: "10.99.0.100", isc.mac: "10.99.0.101"}

        # dhclient -r: a RELEASE from the bound address, then the daemon stops
        assert await dhclient(tmp_path, isc, out, "-r") == 0
        assert await until(lambda: server.stats["releases"] == 1), server.stats
        released = server.leases.lease_at("10.99.0.101")
        assert released is not None and not released.valid(time.time())
        kept = server.leases.lease_at("10.99.0.100")
        assert kept is not None and kept.valid(time.time())
        assert kept.client == "id:01" + busybox.mac.replace(":", "")  # udhcpc sends option 61


async def test_udhcpc_renews_and_releases(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    client = bridge_lan.client("renew")
    config = full_config(tmp_path, "10.99.0.100", "10.99.0.110")
    async with serving(bridge_lan, config) as server:
        out = tmp_path / "renew.log"
        # no -q: it stays bound; SIGUSR1 makes it renew (unicast from its address) at once,
        # -R makes it send a RELEASE when it exits
        proc = await start_udhcpc(tmp_path, client, out, "-R", "-t", "3", "-T", "1", configure=True)
        try:
            await wait_for_event(out, "bound")
            acks = server.stats["acks"]
            proc.send_signal(signal.SIGUSR1)
            await wait_for_event(out, "renew")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
        events = [e for e in parse_events(out) if e["event"] in ("bound", "renew")]
        assert [(e["event"], e["ip"]) for e in events] == [
            ("bound", "10.99.0.100"),
            ("renew", "10.99.0.100"),
        ]
        assert server.stats["acks"] == acks + 1
        assert await until(lambda: server.stats["releases"] == 1), server.stats
        lease = server.leases.lease_at("10.99.0.100")
        assert lease is not None and lease.mac == client.mac and not lease.valid(time.time())


async def wait_for_event(out: Path, event: str) -> None:
    def seen() -> bool:
        return any(e["event"] == event for e in parse_events(out))

    assert await until(seen, within=6.0), f"no {event!r} from the client within 6 s"


async def test_pool_of_ten_with_twelve_clients(
    bridge_lan: BridgeLan, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clients = [bridge_lan.client(f"m{i}", index=i, namespace="many") for i in range(12)]
    config = full_config(tmp_path, "10.99.0.100", "10.99.0.109", probe=True)
    caplog.set_level(logging.WARNING, logger="netboot.dhcp.full")
    async with serving(bridge_lan, config) as server:
        results = await asyncio.gather(*(udhcpc(tmp_path, client, tries=2) for client in clients))
        codes = [code for code, _ in results]
        addresses = [bound_address(events) for _, events in results]
        got = [a for a in addresses if a is not None]
        assert len(got) == 10 and len(set(got)) == 10
        assert set(got) == {f"10.99.0.{n}" for n in range(100, 110)}
        assert codes.count(0) == 10 and codes.count(1) == 2
        assert server.stats["no_address"] >= 2 and server.stats["errors"] == 0
        assert server.stats["probes"] == 10
    refused = [r.getMessage() for r in caplog.records if "no address available" in r.getMessage()]
    assert len(refused) == 1  # one line a minute in all, however many clients are refused
    assert len(saved_leases(tmp_path)) == 10


async def test_probe_skips_an_address_in_use(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    squat(bridge_lan, "10.99.0.100")
    client = bridge_lan.client("c")
    config = full_config(tmp_path, "10.99.0.100", "10.99.0.110", probe=True, decline_time=120)
    async with serving(bridge_lan, config) as server:
        code, events = await udhcpc(tmp_path, client)
        assert code == 0 and bound_address(events) == "10.99.0.101"
        assert server.stats["probe_conflicts"] == 1
    blocked = json.loads((tmp_path / "leases.json").read_text())["blocked"]
    assert [b["address"] for b in blocked] == ["10.99.0.100"]


async def test_udhcpc_declines_an_address_in_use(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    squat(bridge_lan, "10.99.0.100")
    client = bridge_lan.client("c")
    # no server-side probe: the client's own ARP check (-a) finds the squatter and DECLINEs
    config = full_config(tmp_path, "10.99.0.100", "10.99.0.110")
    async with serving(bridge_lan, config) as server:
        code, events = await udhcpc(tmp_path, client, "-a", tries=4)
        assert code == 0 and bound_address(events) == "10.99.0.101"
        assert server.stats["declines"] == 1
        assert server.leases.blocked("10.99.0.100", 0) is not None
