"""DHCP clients in client namespaces: busybox udhcpc, ISC dhclient and hand-made packets.

The real clients report through a hook script that appends one line per event
(`EVENT key=value ...`) to the file named by $NB_OUT; `parse_events()` reads them back.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from netboot.dhcp.sockets import open_udp_socket
from testbed.bridge_lan import Client

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


def bound_address(events: list[dict[str, str]]) -> str | None:
    for event in reversed(events):
        if event["event"] == "bound":
            return event["ip"]
    return None


async def start_udhcpc(
    tmp_path: Path, client: Client, out: Path, *args: str, configure: bool = False
) -> asyncio.subprocess.Process:
    """busybox udhcpc in the foreground on the client's interface, events to `out`."""
    # one script per client: rewriting a shared one while another udhcpc execs it is ETXTBSY
    script = write_script(tmp_path, f"{out.stem}.sh", UDHCPC_SCRIPT)
    env = dict(os.environ, NB_OUT=str(out), NB_CONFIGURE="1" if configure else "")
    return await asyncio.create_subprocess_exec(
        *client.ns.exec("busybox", "udhcpc", "-i", client.interface, "-f", "-s", str(script)),
        *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def udhcpc(
    tmp_path: Path, client: Client, *extra: str, configure: bool = False, tries: int = 3
) -> tuple[int, list[dict[str, str]]]:
    """Run busybox udhcpc until it has a lease (-q) or gives up (-n); (exit code, events)."""
    out = tmp_path / f"udhcpc-{client.ns.name}-{client.interface}.log"
    out.unlink(missing_ok=True)
    once = ("-q", "-n", "-t", str(tries), "-T", "1", "-A", "1")
    proc = await start_udhcpc(tmp_path, client, out, *once, *extra, configure=configure)
    code = await asyncio.wait_for(proc.wait(), 30)
    return code, parse_events(out)


async def dhclient(tmp_path: Path, client: Client, out: Path, *args: str) -> int:
    """ISC dhclient with `args` (-1: get a lease, -r: release it); its exit code."""
    script = write_script(tmp_path, "dhclient.sh", DHCLIENT_SCRIPT)
    files = ["-lf", str(tmp_path / "dhclient.leases"), "-pf", str(tmp_path / "dhclient.pid")]
    proc = await asyncio.create_subprocess_exec(
        *client.ns.exec("dhclient", *args, "-v", "-sf", str(script), "-e", f"NB_OUT={out}"),
        *files,
        client.interface,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), 20)


def client_socket(client: Client) -> socket.socket:
    """A UDP socket on port 68 inside the client's namespace, for hand-made packets."""
    with client.ns.entered():
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
