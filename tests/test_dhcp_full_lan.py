"""The test bed for the full DHCP tests: one LAN of network namespaces made per test.

A server namespace holds a bridge `br0` (10.99.0.1/24); each client namespace is wired to
it by a veth pair. The full DHCP server runs in this process: the test's thread steps into
the server namespace (setns) while the server's sockets are made, so they live there.
Clients are real programs (busybox udhcpc, ISC dhclient) run with `ip netns exec`, or
sockets this process opens inside a client namespace. Everything is deleted afterwards,
processes in the namespaces included.

The tests at the bottom check the bed itself: isolation and clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from netboot import config as config_mod
from netboot.dhcp.full import FullDhcpServer
from netboot.dhcp.sockets import open_udp_socket
from netboot.policy import BootPolicy
from netboot.records import ClientRecords

pytestmark = pytest.mark.netns

SERVER_IP = "10.99.0.1"
NETWORK = IPv4Interface(f"{SERVER_IP}/24")
BRIDGE = "br0"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

UDHCPC_SCRIPT = """#!/bin/sh
echo "$1 ip=$ip mask=$mask subnet=$subnet router=$router dns=$dns domain=$domain \
lease=$lease serverid=$serverid hostname=$hostname siaddr=$siaddr boot_file=$boot_file \
broadcast=$broadcast" >> "$NB_OUT"
if [ -n "$NB_CONFIGURE" ]; then
    case "$1" in
        bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
        deconfig) ip -4 addr flush dev "$interface" ;;
    esac
fi
exit 0
"""

DHCLIENT_SCRIPT = """#!/bin/sh
echo "$reason ip=$new_ip_address mask=$new_subnet_mask lease=$new_dhcp_lease_time \
serverid=$new_dhcp_server_identifier" >> "$NB_OUT"
case "$reason" in
    BOUND|RENEW|REBIND|REBOOT)
        ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
    RELEASE|EXPIRE|STOP|FAIL)
        ip -4 addr flush dev "$interface" ;;
esac
exit 0
"""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run this thread inside a named network namespace, and always come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Client:
    namespace: str
    interface: str
    mac: str


class Lan:
    """Namespaces of one test; `close()` removes them and what runs in them."""

    def __init__(self) -> None:
        self.tag = f"nbfull-{os.getpid()}-{secrets.token_hex(3)}"
        self.server = f"{self.tag}-srv"
        self.namespaces: list[str] = []
        self._ports = 0
        self._add_namespace(self.server)
        ip("-n", self.server, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.server, "addr", "add", f"{SERVER_IP}/24", "dev", BRIDGE)
        ip("-n", self.server, "link", "set", BRIDGE, "up")

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def namespace(self, name: str) -> str:
        full = f"{self.tag}-{name}"
        if full not in self.namespaces:
            self._add_namespace(full)
        return full

    def client(self, name: str, index: int = 0, namespace: str | None = None) -> Client:
        """A veth in namespace `namespace` (default: its own, named `name`) on the bridge."""
        ns = self.namespace(namespace or name)
        self._ports += 1
        port = f"p{self._ports}"
        interface = f"eth{index}"
        mac = f"52:54:00:99:{self._ports // 256:02x}:{self._ports % 256:02x}"
        ip(
            "-n",
            self.server,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            interface,
            "netns",
            ns,
        )
        ip("-n", ns, "link", "set", interface, "address", mac)
        ip("-n", self.server, "link", "set", port, "master", BRIDGE, "up")
        ip("-n", ns, "link", "set", interface, "up")
        return Client(ns, interface, mac)

    def close(self) -> None:
        for name in reversed(self.namespaces):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            for pid in pids.stdout.split():
                if int(pid) != os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.namespaces.clear()


def lan_bed() -> Iterator[Lan]:
    """The `lan` fixture; test modules declare it with `pytest.fixture(lan_bed, name="lan")`."""
    bed = Lan()
    try:
        yield bed
    finally:
        bed.close()


def full_config(tmp_path: Path, **dhcp: Any) -> config_mod.Config:
    """Config for a test: root and lease file under tmp_path; `dhcp` overrides [dhcp]."""
    root = tmp_path / "root"
    (root / "ipxe").mkdir(parents=True, exist_ok=True)
    for name in ("undionly.kpxe", "snponly.efi"):
        (root / "ipxe" / name).write_bytes(b"fake iPXE binary")
    data: dict[str, Any] = {
        "server": {"root": str(root)},
        "dhcp": {"lease_file": str(tmp_path / "leases.json"), "probe": False, **dhcp},
    }
    return config_mod.parse(data, "test")


def make_server(lan: Lan, config: config_mod.Config) -> FullDhcpServer:
    policy = BootPolicy(config, SERVER_IP, 8080)
    return FullDhcpServer(
        config,
        policy,
        ClientRecords(),
        server_ip=SERVER_IP,
        interface=BRIDGE,
        network=NETWORK,
        port=67,
        proxy_port=4011,
    )


@contextlib.asynccontextmanager
async def serving(lan: Lan, config: config_mod.Config) -> AsyncIterator[FullDhcpServer]:
    """A started FullDhcpServer whose sockets live in the server namespace."""
    server = make_server(lan, config)
    with inside(lan.server):
        await server.start()
    try:
        yield server
    finally:
        await server.close()


def client_socket(client: Client) -> socket.socket:
    """A UDP socket on port 68 inside the client's namespace, for hand-made packets."""
    with inside(client.namespace):
        return open_udp_socket(68, client.interface)


async def exchange(
    sock: socket.socket,
    payload: bytes,
    xid: int,
    wait: float = 3.0,
    port: int = 67,
    *,
    linger: float = 0.0,
) -> list[bytes]:
    """Broadcast `payload`; collect replies with this xid until the first one has come and
    `linger` more seconds have passed (to catch duplicates), or `wait` seconds in all."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, payload, ("255.255.255.255", port))
    replies: list[bytes] = []
    deadline = loop.time() + wait
    while (left := deadline - loop.time()) > 0:
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), left)
        except TimeoutError:
            break
        if len(data) > 8 and int.from_bytes(data[4:8], "big") == xid and data[0] == 2:
            replies.append(data)
            if len(replies) == 1:
                deadline = min(deadline, loop.time() + linger)
    return replies


async def until(condition: Callable[[], bool], within: float = 3.0) -> bool:
    """Poll `condition` every 20 ms; its last value after at most `within` seconds."""
    for _ in range(int(within / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def write_script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def parse_events(path: Path) -> list[dict[str, str]]:
    """Lines 'EVENT key=value ...' written by the client scripts."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        words = line.split()
        event = {"event": words[0]}
        for word in words[1:]:
            key, _, value = word.partition("=")
            event[key] = value
        events.append(event)
    return events


async def udhcpc(
    tmp_path: Path, client: Client, *extra: str, configure: bool = False, tries: int = 3
) -> tuple[int, list[dict[str, str]]]:
    """Run busybox udhcpc until it has a lease (-q) or gives up (-n); (exit code, events)."""
    script = write_script(tmp_path, "udhcpc.sh", UDHCPC_SCRIPT)
    out = tmp_path / f"udhcpc-{client.namespace}-{client.interface}.log"
    out.unlink(missing_ok=True)
    env = dict(os.environ, NB_OUT=str(out), NB_CONFIGURE="1" if configure else "")
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
        "-q",
        "-n",
        "-t",
        str(tries),
        "-T",
        "1",
        "-A",
        "1",
        "-s",
        str(script),
        *extra,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    code = await asyncio.wait_for(proc.wait(), 30)
    return code, parse_events(out)


def bound_address(events: list[dict[str, str]]) -> str | None:
    for event in reversed(events):
        if event["event"] == "bound":
            return event["ip"]
    return None


# --- the bed itself ---------------------------------------------------------------------


def test_lan_is_isolated_and_removed() -> None:
    bed = Lan()
    try:
        client = bed.client("a")
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert bed.server in names and client.namespace in names
        links = subprocess.run(
            ["ip", "-n", client.namespace, "-o", "link"], capture_output=True, text=True
        ).stdout
        assert client.mac in links
        with inside(bed.server):
            assert "br0" in Path("/proc/self/net/dev").read_text()
        assert "br0" not in Path("/proc/self/net/dev").read_text()
    finally:
        bed.close()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert bed.tag not in names
