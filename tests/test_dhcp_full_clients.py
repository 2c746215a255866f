"""Full DHCP with real clients: busybox udhcpc and ISC dhclient in their own namespaces."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path

import pytest
from test_dhcp_full_lan import (
    DHCLIENT_SCRIPT,
    SERVER_IP,
    UDHCPC_SCRIPT,
    Lan,
    bound_address,
    full_config,
    ip,
    lan_bed,
    parse_events,
    serving,
    udhcpc,
    until,
    write_script,
)

pytestmark = pytest.mark.netns
lan_fixture = pytest.fixture(lan_bed, name="lan")


def saved_leases(tmp_path: Path) -> dict[str, str]:
    """mac -> address of the leases in the lease file."""
    data = json.loads((tmp_path / "leases.json").read_text())
    return {lease["mac"]: lease["address"] for lease in data["leases"]}


async def test_udhcpc_and_dhclient_get_distinct_leases(lan: Lan, tmp_path: Path) -> None:
    busybox, isc = lan.client("bb"), lan.client("isc")
    config = full_config(
        tmp_path,
        range_start="10.99.0.100",
        range_end="10.99.0.110",
        router="10.99.0.1",
        dns=["10.99.0.1", "10.99.0.2"],
        domain="lab",
        lease_time=600,
        reservations={busybox.mac: {"address": "", "hostname": "bbox"}},
    )
    async with serving(lan, config) as server:
        code, events = await udhcpc(tmp_path, busybox)
        assert code == 0
        bound = next(e for e in events if e["event"] == "bound")
        assert bound["ip"] == "10.99.0.100" and bound["mask"] == "24"
        assert bound["router"] == "10.99.0.1" and bound["domain"] == "lab"
        assert bound["lease"] == "600" and bound["serverid"] == SERVER_IP
        assert bound["hostname"] == "bbox" and bound["broadcast"] == "10.99.0.255"

        script = write_script(tmp_path, "dhclient.sh", DHCLIENT_SCRIPT)
        out = tmp_path / "dhclient.log"
        files = ["-lf", str(tmp_path / "dhclient.leases"), "-pf", str(tmp_path / "dhclient.pid")]
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            isc.namespace,
            "dhclient",
            "-1",
            "-v",
            "-sf",
            str(script),
            "-e",
            f"NB_OUT={out}",
            *files,
            isc.interface,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        events = parse_events(out)
        bound = next(e for e in events if e["event"] in ("BOUND", "REBOOT"))
        assert bound["ip"] == "10.99.0.101" and bound["mask"] == "255.255.255.0"
        assert bound["serverid"] == SERVER_IP
        assert saved_leases(tmp_path) == {busybox.mac: "10.99.0.100", isc.mac: "10.99.0.101"}

        # dhclient -r: a RELEASE from the bound address, then the daemon stops
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            isc.namespace,
            "dhclient",
            "-r",
            "-v",
            "-sf",
            str(script),
            "-e",
            f"NB_OUT={out}",
            *files,
            isc.interface,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert await until(lambda: server.stats["releases"] == 1), server.stats
        released = server.leases.lease_at("10.99.0.101")
        assert released is not None and not released.valid(time.time())
        kept = server.leases.lease_at("10.99.0.100")
        assert kept is not None and kept.valid(time.time())
        assert kept.client == "id:01" + busybox.mac.replace(":", "")  # udhcpc sends option 61


async def test_udhcpc_renews_and_releases(lan: Lan, tmp_path: Path) -> None:
    client = lan.client("renew")
    config = full_config(tmp_path, range_start="10.99.0.100", range_end="10.99.0.110")
    async with serving(lan, config) as server:
        script = write_script(tmp_path, "udhcpc.sh", UDHCPC_SCRIPT)
        out = tmp_path / "renew.log"
        env = {"NB_OUT": str(out), "NB_CONFIGURE": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        # no -q: it stays bound; SIGUSR1 makes it renew (unicast from its address) at once,
        # -R makes it send a RELEASE when it exits
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            client.namespace,
            "busybox",
            "udhcpc",
            "-i",
            client.interface,
            "-f",
            "-R",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            str(script),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
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
    lan: Lan, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clients = [lan.client(f"m{i}", index=i, namespace="many") for i in range(12)]
    config = full_config(tmp_path, range_start="10.99.0.100", range_end="10.99.0.109", probe=True)
    caplog.set_level(logging.WARNING, logger="netboot.dhcp.full")
    async with serving(lan, config) as server:
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
    assert len(refused) == 2
    assert len(saved_leases(tmp_path)) == 10


async def test_probe_skips_an_address_in_use(lan: Lan, tmp_path: Path) -> None:
    squatter, client = lan.client("squat"), lan.client("c")
    ip("-n", squatter.namespace, "addr", "add", "10.99.0.100/24", "dev", squatter.interface)
    config = full_config(
        tmp_path, range_start="10.99.0.100", range_end="10.99.0.110", probe=True, decline_time=120
    )
    async with serving(lan, config) as server:
        code, events = await udhcpc(tmp_path, client)
        assert code == 0 and bound_address(events) == "10.99.0.101"
        assert server.stats["probe_conflicts"] == 1
    blocked = json.loads((tmp_path / "leases.json").read_text())["blocked"]
    assert [b["address"] for b in blocked] == ["10.99.0.100"]


async def test_udhcpc_declines_an_address_in_use(lan: Lan, tmp_path: Path) -> None:
    squatter, client = lan.client("squat"), lan.client("c")
    ip("-n", squatter.namespace, "addr", "add", "10.99.0.100/24", "dev", squatter.interface)
    # no server-side probe: the client's own ARP check (-a) finds the squatter and DECLINEs
    config = full_config(tmp_path, range_start="10.99.0.100", range_end="10.99.0.110")
    async with serving(lan, config) as server:
        code, events = await udhcpc(tmp_path, client, "-a", tries=4)
        assert code == 0 and bound_address(events) == "10.99.0.101"
        assert server.stats["declines"] == 1
        assert server.leases.blocked("10.99.0.100", 0) is not None
