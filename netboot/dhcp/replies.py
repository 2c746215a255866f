"""The full server's replies: OFFER, ACK (with and without a lease) and NAK, as bytes and a
destination.

Pure functions of the request, the server's settings and the decision already taken: which
address, which boot answer, why a NAK. Nothing here looks at leases or asks the boot
policy, so every option a client gets can be checked without a socket.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Network
from typing import Any

from netboot.boot import NoAnswer, PxeAnswer
from netboot.dhcp import packet
from netboot.dhcp.endpoint import Reply
from netboot.dhcp.packet import ACK, BROADCAST_FLAG, NAK, DhcpRequest
from netboot.dhcp.pool import Reservation
from netboot.dhcp.pxe import pxe_options
from netboot.dhcp.sockets import CLIENT_PORT, LIMITED_BROADCAST, SERVER_PORT, reply_address

Options = list[tuple[str | int, Any]]
NAK_MESSAGE_MAX = 200  # option 56 is at most 255 bytes; keep well inside one packet


@dataclass(frozen=True)
class Settings:
    """What every reply of this server carries, from `[dhcp]` and the pool."""

    server_ip: str
    subnet: IPv4Network
    lease_time: int
    router: str = ""
    dns: tuple[str, ...] = ()
    domain: str = ""

    @classmethod
    def from_config(cls, dhcp: Any, server_ip: str, subnet: IPv4Network) -> Settings:
        """From the `[dhcp]` section (`config.dhcp`) and the pool's subnet."""
        return cls(
            server_ip,
            subnet,
            int(dhcp.lease_time),
            dhcp.router or "",
            tuple(dhcp.dns or ()),
            dhcp.domain or "",
        )


def config_options(settings: Settings, reservation: Reservation | None, *, lease: bool) -> Options:
    """Options 1, 28, 3, 6, 15, 12 and, for a lease, 51, 58 (T1 = 1/2) and 59 (T2 = 7/8)."""
    subnet = settings.subnet
    options: Options = [
        ("subnet_mask", str(subnet.netmask)),
        ("broadcast_address", str(subnet.broadcast_address)),
    ]
    if settings.router:
        options.append(("router", settings.router))
    if settings.dns:
        options.append(("name_server", *settings.dns))
    if settings.domain:
        options.append(("domain", settings.domain.encode()))
    if reservation is not None and reservation.hostname:
        options.append(("hostname", reservation.hostname.encode()))
    if lease:
        lease_time = settings.lease_time
        options.extend(
            [
                ("lease_time", lease_time),
                ("renewal_time", lease_time // 2),
                ("rebinding_time", lease_time * 7 // 8),
            ]
        )
    return options


def lease_reply(
    settings: Settings,
    request: DhcpRequest,
    msg_type: int,
    address: str,
    options: Options,
    answer: PxeAnswer | NoAnswer | None,
) -> Reply:
    """An OFFER or ACK giving `address` (0.0.0.0 for an INFORM's ACK) with `options`, plus
    the PXE boot answer proxy mode would give, if there is one."""
    siaddr, boot_file = "0.0.0.0", ""
    options = list(options)
    if isinstance(answer, PxeAnswer):
        options.extend(pxe_options(request, answer))
        siaddr = settings.server_ip  # the boot server, for HTTP answers too (see proxy.py)
        boot_file = answer.boot_file
    payload = packet.build_reply(
        # an OFFER goes to a client without an address; only an ACK may echo ciaddr
        request if msg_type == ACK else replace(request, ciaddr="0.0.0.0"),
        msg_type,
        server_ip=settings.server_ip,
        yiaddr=address,
        siaddr=siaddr,
        boot_file=boot_file,
        options=options,
    )
    return payload, reply_address(request)


def boot_detail(answer: PxeAnswer | NoAnswer | None) -> dict[str, Any]:
    """What the client record notes about the boot answer in a lease reply."""
    if isinstance(answer, PxeAnswer):
        return {
            "boot_file": answer.boot_file,
            "arch": answer.arch,
            "firmware": answer.firmware,
            "ipxe": answer.ipxe,
        }
    if answer is not None:
        return {"boot_file": "", "no_boot": answer.reason}
    return {"boot_file": ""}


def nak(settings: Settings, request: DhcpRequest, reason: str) -> Reply:
    """RFC 2131 4.3.2: a NAK is broadcast, or sent to the relay with the broadcast bit set;
    option 56 says why."""
    nak_request = replace(request, ciaddr="0.0.0.0")
    if request.giaddr not in ("", "0.0.0.0"):
        nak_request = replace(nak_request, flags=request.flags | BROADCAST_FLAG)
        destination = (request.giaddr, SERVER_PORT)
    else:
        destination = (LIMITED_BROADCAST, CLIENT_PORT)
    payload = packet.build_reply(
        nak_request,
        NAK,
        server_ip=settings.server_ip,
        options=[("error_message", reason.encode()[:NAK_MESSAGE_MAX])],
    )
    return payload, destination
