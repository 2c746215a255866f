"""ARP probe: is an address already used on the LAN before we offer it?

A machine with a static address inside the pool, or one whose lease we forgot, answers an
ARP request for its address. The probe is the RFC 5227 kind (sender address 0.0.0.0, so no
neighbour cache is disturbed) sent on a raw AF_PACKET socket opened once at start. Replies are
read by the event loop's reader callback, so a probe never blocks the loop, and each probe
waits at most `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from ipaddress import IPv4Address

log = logging.getLogger("netboot.dhcp.probe")

ETH_P_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST_MAC = b"\xff" * 6
DEFAULT_TIMEOUT = 0.5
PROBES = 2  # a second request halfway through the wait, in case the first was lost


def arp_probe_frame(source_mac: bytes, address: IPv4Address) -> bytes:
    """Ethernet broadcast 'who has ADDRESS? tell 0.0.0.0'."""
    ethernet = BROADCAST_MAC + source_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, ARP_REQUEST)
    arp += source_mac + bytes(4) + bytes(6) + address.packed
    return ethernet + arp


def arp_sender(frame: bytes) -> str | None:
    """The sender IPv4 address of an ARP request or reply frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    hardware, protocol, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if hardware != 1 or protocol != 0x0800 or hlen != 6 or plen != 4:
        return None
    if op not in (ARP_REQUEST, ARP_REPLY):
        return None
    sender = frame[28:32]
    return None if sender == bytes(4) else str(IPv4Address(sender))


class ArpProber:
    """Probes addresses on one interface; needs CAP_NET_RAW."""

    def __init__(self, interface: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.interface = interface
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._mac = b""
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}

    def open(self) -> None:
        """Open the raw socket on the interface and start reading replies (raises OSError)."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        try:
            sock.bind((self.interface, ETH_P_ARP))
            sock.setblocking(False)
            self._mac = sock.getsockname()[4][:6]
        except OSError:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read)

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        except RuntimeError:
            pass  # loop already gone
        self._sock.close()
        self._sock = None
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(False)
        self._waiting.clear()

    async def in_use(self, address: IPv4Address) -> bool:
        """True if anything answers for the address within the timeout."""
        if self._sock is None:
            raise RuntimeError("prober not open")
        key = str(address)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        frame = arp_probe_frame(self._mac, address)
        try:
            for attempt in range(PROBES):
                self._send(frame)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), self.timeout / PROBES)
                except TimeoutError:
                    if attempt == PROBES - 1:
                        return False
            return False
        finally:
            futures = self._waiting.get(key, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(key, None)

    def _send(self, frame: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.send(frame)
        except OSError as exc:  # e.g. interface down: the wait then finds nothing
            log.debug("ARP probe not sent on %s: %s", self.interface, exc)

    def _read(self) -> None:
        assert self._sock is not None
        while True:
            try:
                frame = self._sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("ARP socket error on %s: %s", self.interface, exc)
                return
            sender = arp_sender(frame)
            for future in self._waiting.get(sender or "", []):
                if not future.done():
                    future.set_result(True)
