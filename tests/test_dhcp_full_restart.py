"""`netboot serve --dhcp full` as a real process: bindings survive `kill -9`, a corrupt lease
file is kept aside, and a second DHCP server on the LAN stops full mode from starting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_dhcp_full_lan import (
    BRIDGE,
    SERVER_IP,
    Lan,
    bound_address,
    inside,
    ip,
    lan_bed,
    udhcpc,
)

from netboot.dhcp.detect import find_other_dhcp_servers

pytestmark = pytest.mark.netns
lan_fixture = pytest.fixture(lan_bed, name="lan")

NETBOOT = [sys.executable, "-m", "netboot"]
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


class ServeProcess:
    """`netboot serve --dhcp full` in the server namespace; stderr collected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def read_until(self, text: str, within: float = 20.0) -> bool:
        """Collect stderr until a line contains `text` (True) or the process ends (False)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(within):
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    return False
                self.lines.append(line.decode().rstrip())
                if text in self.lines[-1]:
                    return True


@contextlib.asynccontextmanager
async def serve(lan: Lan, config: Path, *flags: str) -> AsyncIterator[ServeProcess]:
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        lan.server,
        *NETBOOT,
        "serve",
        "--config",
        str(config),
        "--interface",
        BRIDGE,
        "--dhcp",
        "full",
        *flags,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    process = ServeProcess(proc)
    try:
        yield process
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_bindings_survive_kill_9(lan: Lan, tmp_path: Path) -> None:
    first, second = lan.client("first"), lan.client("second")
    config = write_config(tmp_path)
    async with serve(lan, config, "--force") as server:
        assert await server.read_until(READY), server.lines
        code, events = await udhcpc(tmp_path, first)
        taken = bound_address(events)
        assert code == 0 and taken is not None
        server.proc.kill()  # SIGKILL right after the ACK: no clean shutdown
        await server.proc.wait()
    async with serve(lan, config, "--force") as server:
        assert await server.read_until(READY), server.lines
        assert "1 leases known" in server.lines[-1]
        # another client asking for that very address gets a different one
        code, events = await udhcpc(tmp_path, second, "-r", taken)
        assert code == 0 and bound_address(events) not in (None, taken)
        # the first client comes back to its address
        code, events = await udhcpc(tmp_path, first)
        assert code == 0 and bound_address(events) == taken
        server.proc.terminate()
        assert await server.proc.wait() == 0


def kept_aside(directory: Path) -> list[Path]:
    return list(directory.glob("leases.json.corrupt-*"))


async def test_corrupt_lease_file_is_kept_aside(lan: Lan, tmp_path: Path) -> None:
    client = lan.client("c")
    leases = tmp_path / "leases.json"
    garbage = '{"format": "netboot-leases", "version": 1, "leases": [{"client": '
    leases.write_text(garbage)
    async with serve(lan, write_config(tmp_path), "--force") as server:
        assert await server.read_until(READY), server.lines
        complaints = [line for line in server.lines if "is corrupt" in line]
        assert len(complaints) == 1 and "starting with no leases" in complaints[0]
        aside = kept_aside(tmp_path)
        assert len(aside) == 1 and aside[0].read_text() == garbage
        assert str(aside[0]) in complaints[0]
        code, events = await udhcpc(tmp_path, client)
        assert code == 0 and bound_address(events) == "10.99.0.100"
        server.proc.terminate()
        await server.proc.wait()
    assert json.loads(leases.read_text())["leases"][0]["address"] == "10.99.0.100"


@contextlib.asynccontextmanager
async def dnsmasq(lan: Lan, tmp_path: Path, *flags: str) -> AsyncIterator[None]:
    """dnsmasq handing out addresses from 10.99.0.2 on the same LAN."""
    other = lan.client("other") if f"{lan.tag}-other" not in lan.namespaces else None
    if other is not None:
        ip("-n", other.namespace, "addr", "add", "10.99.0.2/24", "dev", other.interface)
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        f"{lan.tag}-other",
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--user=root",
        "--interface=eth0",
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


async def test_another_dhcp_server_is_found(lan: Lan, tmp_path: Path) -> None:
    with inside(lan.server):
        assert await find_other_dhcp_servers(BRIDGE, timeout=1.0) == []
    # dnsmasq ICMP-pings an address for up to 3 s before it first offers it
    async with dnsmasq(lan, tmp_path):
        with inside(lan.server):
            assert await find_other_dhcp_servers(BRIDGE, timeout=4.0) == ["10.99.0.2"]
    # `netboot serve --dhcp full` refuses to start: one line, exit 2
    async with dnsmasq(lan, tmp_path, "--no-ping"), serve(lan, write_config(tmp_path)) as server:
        assert not await server.read_until(READY)
        assert await server.proc.wait() == 2
        assert "another DHCP server" in server.lines[-1] and "10.99.0.2" in server.lines[-1]
        assert SERVER_IP not in server.lines[-1]
