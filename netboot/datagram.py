"""The one asyncio DatagramProtocol of every UDP transport (DHCP 67/4011, TFTP 69 and its
transfer ports).

Each of them needs the same three things from a socket: hand every datagram to one handler,
make a bug in that handler cost one packet instead of the socket (the loop would otherwise
log it and go on, but the counter that tells an operator something is wrong would not move),
and send replies. Keeping that in one place means a transport module holds only its
protocol.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from netboot.ratelimit import limited

Address = tuple[str, int]
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Linux <netinet/in.h>; Python 3.11 lacks it
Handler = Callable[[bytes, Address], None]


def _drop(data: bytes, addr: Address) -> None:
    """The handler until a real one is set (a TFTP transfer socket is bound first)."""


class DatagramEndpoint(asyncio.DatagramProtocol):
    """Calls `handler(data, addr)` for every datagram; an exception it raises is counted in
    `stats[error_key]` and logged with its traceback (at most once a minute: a packet that
    trips a bug could be sent a thousand times a second), and the next datagram is served."""

    def __init__(
        self,
        stats: Counter[str],
        log: logging.Logger,
        what: str,
        handler: Handler = _drop,
        *,
        error_key: str = "errors",
    ) -> None:
        self.stats = stats
        self.log = log
        self.what = what  # "DHCP packet", "TFTP request": for the log line
        self.handler = handler
        self.error_key = error_key
        self.on_error: Callable[[Exception], None] | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self.handler(data, addr)
        except Exception:  # a bug must cost one packet, never the socket
            self.handler_failed(addr)

    def handler_failed(self, addr: Address) -> None:
        """Count and log (rate-limited, with the traceback) the exception being handled."""
        self.stats[self.error_key] += 1
        limited(self.log)(
            f"handler_error:{self.what}",
            logging.ERROR,
            "error handling a %s from %s:%s",
            self.what,
            *addr[:2],
            exc_info=True,
        )

    def error_received(self, exc: Exception) -> None:
        """An ICMP error the kernel queued (see `report_icmp_errors`) or a send failure."""
        self.log.debug("%s socket error: %s", self.what, exc)
        if self.on_error is not None:
            self.on_error(exc)

    def report_icmp_errors(self) -> None:
        """Have the kernel report ICMP errors (port unreachable) on this unconnected socket:
        Linux passes them to an unconnected UDP socket only with IP_RECVERR set."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)

    def send(self, payload: bytes, destination: Address) -> None:
        """Send if the socket is still open (a reply decided after close() is dropped)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(payload, destination)

    def close(self) -> None:
        """Close the socket and let go of the handler: a handler bound to its owner (a TFTP
        transfer) would otherwise keep owner, buffers and socket in a reference cycle that
        only the cyclic collector frees, long after the transfer ended."""
        if self.transport is not None:
            self.transport.close()
        self.handler = _drop
        self.on_error = None

    @property
    def port(self) -> int:
        if self.transport is None:
            raise RuntimeError("endpoint not open")
        return int(self.transport.get_extra_info("sockname")[1])


class LeanEndpoint(DatagramEndpoint):
    """The same contract on a plain non-blocking socket read by a loop reader (add_reader),
    for the per-packet hot paths (a TFTP transfer's blocks, DHCP in a storm): asyncio's
    datagram transport allocates a 256 KiB buffer per recvfrom, reads one datagram per
    wake-up and adds several calls per packet, more than the protocol's own work
    (docs/tftp.md#measured-bench-tftp_throughputpy). Up to `batch` queued datagrams are read
    per wake-up, so a burst costs one pass of the loop, not one per packet. ICMP errors the
    kernel queued (IP_RECVERR, set by `open`) and send failures go to `on_error`; a datagram
    the socket buffer has no room for is dropped (the sender's retransmission covers it),
    not queued."""

    RECV_SIZE = 2048  # ACKs are 4 bytes, ERRORs short; longer datagrams are truncated
    sock: socket.socket | None = None

    def __init__(self, *args: Any, batch: int = 1, recv_size: int = RECV_SIZE, **kw: Any):
        super().__init__(*args, **kw)
        self.batch = batch
        self.recv_size = recv_size

    def open(self, host: str) -> LeanEndpoint:
        """Bind a free port on `host` and start reading (call on the running loop)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, 0))
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            self.adopt(sock)
        except BaseException:
            sock.close()
            raise
        return self

    def adopt(self, sock: socket.socket) -> LeanEndpoint:
        """Start reading a ready (bound) socket; it is closed by `close`."""
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self.sock = sock
        self._recvfrom = sock.recvfrom
        self._sendto = sock.sendto
        return self

    def _readable(self) -> None:
        for _ in range(self.batch):
            try:
                data, addr = self._recvfrom(self.recv_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            try:
                self.handler(data, addr)
            except Exception:  # a bug must cost one packet, never the socket
                self.handler_failed(addr)
            if self.sock is None:  # the handler closed us
                return

    def report_icmp_errors(self) -> None:
        """IP_RECVERR (already on for a socket `open` made)."""
        if self.sock is not None and self.sock.family == socket.AF_INET:
            self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)

    def send(self, payload: bytes, destination: Address) -> None:
        if self.sock is None:
            return  # a reply decided after close() is dropped
        try:
            self._sendto(payload, destination)
        except (BlockingIOError, InterruptedError):
            self.stats["send_dropped"] += 1
        except OSError as exc:
            self.error_received(exc)

    def close(self) -> None:
        """Stop reading and close the socket; the base class lets go of the handler."""
        if self.sock is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        super().close()  # no transport here: it only drops handler and on_error

    @property
    def port(self) -> int:
        if self.sock is None:
            raise RuntimeError("endpoint not open")
        return int(self.sock.getsockname()[1])


async def open_endpoint(
    endpoint: DatagramEndpoint,
    *,
    sock: socket.socket | None = None,
    local_addr: Address | None = None,
) -> DatagramEndpoint:
    """Bind `endpoint` to a ready socket or to `local_addr`; returns it, connected."""
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: endpoint, sock=sock, local_addr=local_addr)
    return endpoint


async def _until(sock: socket.socket, writable: bool) -> None:
    """Wait until `sock` can be read (or written) through the loop's own selector."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def sendto(sock: socket.socket, data: bytes, addr: Address) -> None:
    """loop.sock_sendto for every loop netboot runs on: uvloop does not implement it."""
    while True:
        try:
            sock.sendto(data, addr)
            return
        except (BlockingIOError, InterruptedError):
            await _until(sock, writable=True)


async def recvfrom(sock: socket.socket, size: int) -> tuple[bytes, Address]:
    """loop.sock_recvfrom for every loop netboot runs on (see sendto); `sock` is
    non-blocking."""
    while True:
        try:
            data, addr = sock.recvfrom(size)
            return data, (addr[0], addr[1])
        except (BlockingIOError, InterruptedError):
            await _until(sock, writable=False)
