"""Is another DHCP server already handing out addresses on this LAN?

Two address-giving servers on one segment fight over clients, so full mode looks first:
it broadcasts a DISCOVER from port 68 for a made-up, locally administered MAC with a random
xid, and collects OFFERs for that xid. The servers' identifiers (option 54, else the
sender's address) are the answer. The made-up client never requests, so the other servers
only hold a short-lived offer.

`netboot doctor` also sends the DISCOVER a BIOS PXE ROM sends (vendor class `PXEClient`,
arch 0) and looks at what each answer would boot: two servers answering PXE on one segment
means machines boot whichever answers first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

from scapy.layers.dhcp import BOOTP, DHCP

from netboot.datagram import recvfrom, sendto
from netboot.dhcp.packet import (
    OFFER,
    OPT_MSG_TYPE,
    OPT_SERVER_ID,
    OPT_VENDOR_CLASS,
    parse_reply,
)
from netboot.dhcp.prerequisites import FullDhcpError
from netboot.dhcp.sockets import CLIENT_PORT, LIMITED_BROADCAST, SERVER_PORT, open_udp_socket

log = logging.getLogger("netboot.dhcp.detect")

RESEND_EVERY = 1.0  # seconds: a second DISCOVER in case the first was lost
PXE_VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"  # what a BIOS PXE ROM sends
OPT_BOOTFILE_NAME = 67


@dataclass(frozen=True)
class Offer:
    """One server's OFFER: who, whether it gives an address, and what it would boot."""

    server: str
    address: str  # yiaddr; "0.0.0.0" from a proxyDHCP
    boot_file: str  # file field or option 67; "" when none
    pxe: bool  # vendor class PXEClient or a boot file: it answers PXE clients
    next_server: str = "0.0.0.0"  # siaddr: where GRUB fetches its menu (docs/secure-boot.md)

    @property
    def gives_address(self) -> bool:
        return self.address != "0.0.0.0"


class DetectError(FullDhcpError):
    """The check could not run (str() is the one line to show)."""


def made_up_discover(mac: bytes, xid: int, *, pxe: bool = False) -> bytes:
    """A plain DISCOVER with the broadcast flag, so answers come to 255.255.255.255:68;
    with `pxe`, the one a BIOS PXE ROM sends."""
    options: list = [
        ("message-type", "discover"),
        ("client_id", b"\x01" + mac),
        ("param_req_list", [1, 3, 6, 43, 51, 54, 60, 66, 67]),
    ]
    if pxe:
        options += [("vendor_class_id", PXE_VENDOR_CLASS), (93, b"\x00\x00")]
    packet = BOOTP(op=1, htype=1, hlen=6, xid=xid, flags=0x8000, chaddr=mac + bytes(10)) / DHCP(
        options=[*options, "end"]
    )
    data = bytes(packet)
    return data + bytes(max(0, 300 - len(data)))


def read_offer(data: bytes, xid: int, mac: bytes, sender: str) -> Offer | None:
    """An OFFER for our xid and MAC, or None for anything else."""
    try:
        bootp, options = parse_reply(data)
    except Exception:  # scapy raises many types on junk; junk is simply not an offer
        return None
    if bootp.op != 2 or bootp.xid != xid or bytes(bootp.chaddr)[:6] != mac:
        return None
    if options.get(OPT_MSG_TYPE) != OFFER:
        return None
    server_id = options.get(OPT_SERVER_ID)
    boot_file = bytes(bootp.file).rstrip(b"\0") or options.get(OPT_BOOTFILE_NAME) or b""
    if isinstance(boot_file, bytes):
        boot_file = boot_file.decode("ascii", "replace")
    boot_file = str(boot_file).rstrip("\0")  # option 67 often ends in a NUL
    vendor = options.get(OPT_VENDOR_CLASS) or b""
    pxe = bool(boot_file) or (isinstance(vendor, bytes) and vendor.startswith(b"PXEClient"))
    return Offer(
        server=server_id if isinstance(server_id, str) else sender,
        address=str(bootp.yiaddr),
        boot_file=boot_file,
        pxe=pxe,
        next_server=str(bootp.siaddr),
    )


async def find_other_dhcp_servers(
    interface: str,
    timeout: float = 3.0,  # noqa: ASYNC109 (the collection window, not a cancellation)
    *,
    port: int = CLIENT_PORT,
    server_port: int = SERVER_PORT,
) -> list[str]:
    """Broadcast a DISCOVER on `interface` and return the ids of the servers that offered,
    in the order they answered. Raises DetectError if the check cannot run."""
    offers = await collect_offers(interface, timeout, port=port, server_port=server_port)
    return [offer.server for offer in offers]


async def collect_offers(
    interface: str,
    timeout: float = 3.0,  # noqa: ASYNC109 (the collection window, not a cancellation)
    *,
    pxe: bool = False,
    port: int = CLIENT_PORT,
    server_port: int = SERVER_PORT,
) -> list[Offer]:
    """Broadcast a DISCOVER (a PXE one with `pxe`) on `interface`; the first OFFER of each
    server, in the order they answered. Raises DetectError if the check cannot run."""
    mac = bytes([0x02]) + os.urandom(5)  # locally administered, unicast
    xid = int.from_bytes(os.urandom(4), "big")
    try:
        sock = open_udp_socket(port, interface)
    except OSError as exc:
        raise DetectError(
            f"cannot look for other DHCP servers on {interface or 'any interface'}: "
            f"UDP port {port}: {exc.strerror}"
        ) from None
    discover = made_up_discover(mac, xid, pxe=pxe)
    found: list[Offer] = []
    deadline = time.monotonic() + timeout
    next_send = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                try:
                    await sendto(sock, discover, (LIMITED_BROADCAST, server_port))
                except OSError as exc:
                    raise DetectError(
                        f"cannot send a DHCP DISCOVER on {interface or 'any interface'}: "
                        f"{exc.strerror}"
                    ) from None
                next_send = now + RESEND_EVERY
            wait = min(deadline, next_send) - now
            try:
                data, addr = await asyncio.wait_for(recvfrom(sock, 4096), wait)
            except TimeoutError:
                continue
            offer = read_offer(data, xid, mac, addr[0])
            if offer is not None and offer.server not in [o.server for o in found]:
                log.info(
                    "DHCP server %s answered on %s", offer.server, interface or "any interface"
                )
                found.append(offer)
    finally:
        sock.close()
    return found
