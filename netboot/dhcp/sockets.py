"""UDP sockets for DHCP, and where a reply goes (RFC 2131 section 4.1)."""

from __future__ import annotations

import socket

from netboot.dhcp.packet import DhcpRequest

CLIENT_PORT = 68
SERVER_PORT = 67
LIMITED_BROADCAST = "255.255.255.255"
# A room powering on sends DISCOVERs in bursts: the default ~200 KiB queue holds ~200 of
# them, so a server descheduled for 40 ms at 5,000/s would drop the rest. 4 MiB holds
# thousands; the kernel caps it at net.core.rmem_max unless we may force it.
RECEIVE_BUFFER = 4 * 1024 * 1024
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux <asm/socket.h>


def open_udp_socket(port: int, interface: str = "", address: str = "0.0.0.0") -> socket.socket:
    """A non-blocking UDP socket that can send and receive broadcasts on one interface.

    SO_BINDTODEVICE keeps a multi-homed server from answering on the wrong LAN and makes
    255.255.255.255 leave through that interface even without a route for it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        _grow_receive_buffer(sock)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _grow_receive_buffer(sock: socket.socket) -> None:
    """RECEIVE_BUFFER, forced past rmem_max when we may (CAP_NET_ADMIN), else what the
    kernel allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def reply_address(request: DhcpRequest) -> tuple[str, int]:
    """Relay first; then a client that has an address; else broadcast.

    Unicasting to yiaddr before the client has configured it would need an ARP entry we
    cannot add from an ordinary socket, so offers to address-less clients are broadcast,
    which every client accepts.
    """
    if request.giaddr not in ("", "0.0.0.0"):
        return request.giaddr, SERVER_PORT
    if request.ciaddr not in ("", "0.0.0.0") and not request.broadcast:
        return request.ciaddr, CLIENT_PORT
    return LIMITED_BROADCAST, CLIENT_PORT
