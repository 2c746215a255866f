"""Where DHCP requests come in, for the proxy and the full server alike.

Every datagram takes the same path before a server sees it: a byte-level glance (a few
microseconds) decides whether it is worth a scapy decode (a few hundred), the decode may find
it malformed, and each way of being dropped has its counter. What is left is a `DhcpRequest`
for the server's handler; a reply the handler returns goes out on the socket the request came
in on (port 4011 requests are answered from 4011).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from netboot.datagram import Address, LeanEndpoint
from netboot.dhcp import packet
from netboot.dhcp.packet import DhcpRequest
from netboot.dhcp.prefilter import BOOTREQUEST, Glance, glance
from netboot.dhcp.sockets import open_udp_socket
from netboot.ratelimit import limited
from netboot.untrusted import for_log

Reply = tuple[bytes, Address]
BATCH = 32  # datagrams read per wake-up of the loop
RECV_SIZE = 65535  # whole datagrams, however long (a real one is under 1,500 bytes)
Wanted = Callable[[Glance], bool]
RequestHandler = Callable[[DhcpRequest, Address], Reply | None]
LightDecoder = Callable[[bytes], DhcpRequest | None]  # a decode without scapy, or None


def decode(
    data: bytes,
    addr: Address,
    stats: Counter[str],
    wanted: Wanted,
    log: logging.Logger,
    light: LightDecoder | None = None,
) -> DhcpRequest | None:
    """The request in `data` if the server wants it, else None with the reason counted:
    `ignored` (not a BOOTREQUEST, or not for this server), `malformed` (looks like a
    request but does not decode; also counted as `malformed_<reason>`, and logged at most
    once a minute per reason). Every datagram counts as `received`, every decoded one as
    `in:TYPE` (netboot/metrics.py turns those into packets by message type). `light` is
    asked first (proxyDHCP's hot path, `fastpath.py`); scapy decodes what it declines."""
    stats["received"] += 1
    seen = glance(data)
    if seen is None:
        stats["malformed" if data[:1] == bytes([BOOTREQUEST]) else "ignored"] += 1
        return None
    if not wanted(seen):
        stats["ignored"] += 1
        return None
    request = light(data) if light is not None else None
    if request is not None:
        stats[f"in:{message_name(request.msg_type)}"] += 1
        return request
    try:
        request = packet.parse(data)
    except packet.MalformedPacket as exc:
        stats["malformed"] += 1
        stats[f"malformed_{exc.reason}"] += 1
        limited(log)(
            f"malformed_{exc.reason}",
            logging.INFO,
            "dropped malformed DHCP packet from %s: %s",
            addr[0],
            for_log(exc),
        )
        return None
    stats[f"in:{message_name(request.msg_type)}"] += 1
    return request


def message_name(msg_type: int) -> str:
    return packet.MESSAGE_NAMES.get(msg_type, "other")


class DhcpEndpoint(LeanEndpoint):
    """One DHCP port: decode what `wanted` lets through, hand it to `on_request`, send the
    reply it returns (None: no reply now; an asynchronous answer uses `send` later). Read
    the lean way, a burst at a time: a room powering on is thousands of DISCOVERs a second
    (docs/performance.md)."""

    def __init__(
        self,
        stats: Counter[str],
        log: logging.Logger,
        wanted: Wanted,
        on_request: RequestHandler,
        light: LightDecoder | None = None,
    ) -> None:
        super().__init__(
            stats, log, "DHCP packet", self._on_datagram, batch=BATCH, recv_size=RECV_SIZE
        )
        self.wanted = wanted
        self.on_request = on_request
        self.light = light

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        request = decode(data, addr, self.stats, self.wanted, self.log, self.light)
        if request is None:
            return
        reply = self.on_request(request, addr)
        if reply is not None:
            self.send(*reply)

    def send(self, payload: bytes, destination: Address) -> None:
        """Send a reply and count it as `out:TYPE` (its option 53, read the way the
        pre-filter reads a request's)."""
        seen = glance(bytes([BOOTREQUEST]) + payload[1:])
        self.stats[f"out:{message_name(seen.msg_type if seen else 0)}"] += 1
        super().send(payload, destination)


async def open_dhcp_endpoint(
    port: int,
    interface: str,
    stats: Counter[str],
    log: logging.Logger,
    wanted: Wanted,
    on_request: RequestHandler,
    light: LightDecoder | None = None,
) -> DhcpEndpoint:
    """A DhcpEndpoint on UDP `port`, bound to `interface` (see `sockets.open_udp_socket`)."""
    sock = open_udp_socket(port, interface)
    try:
        endpoint = DhcpEndpoint(stats, log, wanted, on_request, light)
        endpoint.adopt(sock)
    except BaseException:
        sock.close()
        raise
    return endpoint
