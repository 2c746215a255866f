"""`netboot serve --dhcp full` as a real process: bindings survive `kill -9`, a corrupt lease
file is kept aside, and a second DHCP server on the LAN stops full mode from starting."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from netboot.dhcp.detect import find_other_dhcp_servers
from testbed.bridge_lan import BRIDGE, SERVER_IP, BridgeLan, Client
from testbed.dhcp_clients import bound_address, udhcpc
from testbed.serve import ServeProcess

pytestmark = pytest.mark.netns  # each test on its own `bridge_lan`

READY = "full DHCP on"


def write_config(tmp_path: Path, **dhcp: object) -> Path:
    lines = [
        "[server]",
        f'root = "{tmp_path / "root"}"',
        "http_port = 0",
        "tftp_port = 0",
        "[dhcp]",
        'range_start = "10.99.0.100"',
        'range_end = "10.99.0.120"',
        f'lease_file = "{tmp_path / "leases.json"}"',
        "probe = false",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in dhcp.items()]
    path = tmp_path / "netboot.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def serve(bridge_lan: BridgeLan, config: Path, *flags: str) -> Iterator[ServeProcess]:
    """`netboot serve --dhcp full` on the bridge, as the config says otherwise."""
    server = ServeProcess(
        bridge_lan.server,
        None,
        interface=BRIDGE,
        http_port=None,
        tftp_port=None,
        dhcp="full",
        config=config,
        extra=flags,
        log_path=config.with_suffix(".log"),
    )
    try:
        yield server.launch()
    finally:
        server.stop()


def last_line(server: ServeProcess) -> str:
    return server.log().splitlines()[-1]


async def test_bindings_survive_kill_9(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    first, second = bridge_lan.client("first"), bridge_lan.client("second")
    config = write_config(tmp_path)
    with serve(bridge_lan, config, "--force") as server:
        assert server.wait_for(READY), server.log()
        code, events = await udhcpc(tmp_path, first)
        taken = bound_address(events)
        assert code == 0 and taken is not None
        server.proc.kill()  # SIGKILL right after the ACK: no clean shutdown
        server.proc.wait()
    with serve(bridge_lan, config, "--force") as server:
        ready = server.wait_for(READY)
        assert ready, server.log()
        assert "1 leases known" in ready
        # another client asking for that very address gets a different one
        code, events = await udhcpc(tmp_path, second, "-r", taken)
        assert code == 0 and bound_address(events) not in (None, taken)
        # the first client comes back to its address
        code, events = await udhcpc(tmp_path, first)
        assert code == 0 and bound_address(events) == taken
        assert server.stop() == 0  # SIGTERM


def kept_aside(directory: Path) -> list[Path]:
    return list(directory.glob("leases.json.corrupt-*"))


async def test_corrupt_lease_file_is_kept_aside(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    client = bridge_lan.client("c")
    leases = tmp_path / "leases.json"
    garbage = '{"format": "netboot-leases", "version": 1, "leases": [{"client": '
    leases.write_text(garbage)
    with serve(bridge_lan, write_config(tmp_path), "--force") as server:
        assert server.wait_for(READY), server.log()
        complaints = [line for line in server.log().splitlines() if "is corrupt" in line]
        assert len(complaints) == 1 and "starting with no leases" in complaints[0]
        aside = kept_aside(tmp_path)
        assert len(aside) == 1 and aside[0].read_text() == garbage
        assert str(aside[0]) in complaints[0]
        code, events = await udhcpc(tmp_path, client)
        assert code == 0 and bound_address(events) == "10.99.0.100"
        server.stop()
    assert json.loads(leases.read_text())["leases"][0]["address"] == "10.99.0.100"


@contextlib.asynccontextmanager
async def dnsmasq(other: Client, tmp_path: Path, *flags: str) -> AsyncIterator[None]:
    """dnsmasq handing out addresses from the machine `other` (10.99.0.2) on the same LAN."""
    proc = await asyncio.create_subprocess_exec(
        *other.ns.exec("dnsmasq"),
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--user=root",
        f"--interface={other.interface}",
        "--bind-interfaces",
        "--dhcp-range=10.99.0.150,10.99.0.160,1h",
        f"--dhcp-leasefile={tmp_path / 'dnsmasq.leases'}",
        f"--pid-file={tmp_path / 'pid'}",
        *flags,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)
        assert proc.returncode is None
        yield
    finally:
        proc.kill()
        await proc.wait()


async def test_another_dhcp_server_is_found(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    other = bridge_lan.client("other")
    other.ns.ip("addr", "add", "10.99.0.2/24", "dev", other.interface)
    with bridge_lan.server.entered():
        assert await find_other_dhcp_servers(BRIDGE, timeout=1.0) == []
    # dnsmasq ICMP-pings an address for up to 3 s before it first offers it
    async with dnsmasq(other, tmp_path):
        with bridge_lan.server.entered():
            assert await find_other_dhcp_servers(BRIDGE, timeout=4.0) == ["10.99.0.2"]
    # `netboot serve --dhcp full` refuses to start: one line, exit 2
    config = write_config(tmp_path)
    async with dnsmasq(other, tmp_path, "--no-ping"):
        with serve(bridge_lan, config) as server:
            assert not server.wait_for(READY)
            assert server.proc.wait() == 2
            assert "another DHCP server" in last_line(server) and "10.99.0.2" in last_line(server)
            assert SERVER_IP not in last_line(server)
