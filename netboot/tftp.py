"""Read-only asyncio TFTP server (RFC 1350, 2347, 2348, 2349, 7440) for the iPXE binaries.

It lives on the same event loop as DHCP, so nothing here may block: file reads go to the
executor in read-ahead chunks, and each packet is handled in a plain callback. Every
transfer gets its own ephemeral UDP port (the RFC 1350 transfer ID). Request parsing and
OACK/ERROR encoding use tftpy's packet codec; DATA and ACK, the per-block hot path, use
struct directly (tftpy's ACK decode costs ~10x more, see docs/tftp.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketERR, TftpPacketOACK, TftpPacketRRQ

from netboot.paths import UnsafePath, confine
from netboot.records import ClientRecords

log = logging.getLogger("netboot.tftp")

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6
ERR_NOT_FOUND, ERR_ACCESS, ERR_ILLEGAL, ERR_UNKNOWN_TID, ERR_OPTIONS = 1, 2, 4, 5, 8

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464  # RFC 2348
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255  # RFC 2349
MIN_WINDOWSIZE, MAX_WINDOWSIZE = 1, 64  # RFC 7440 allows 65535; 64 bounds the burst
READ_CHUNK = 256 * 1024

_HEAD = struct.Struct("!HH")
_OPCODE = struct.Struct("!H")
_codec = TftpPacketFactory()

Address = tuple[str, int]


def error_packet(code: int) -> bytes:
    """An ERROR packet with tftpy's standard message for the code."""
    packet = TftpPacketERR()
    packet.errorcode = code
    return packet.encode().buffer


def oack_packet(options: dict[str, str]) -> bytes:
    packet = TftpPacketOACK()
    packet.options = options
    return packet.encode().buffer


@dataclass
class Negotiated:
    """What a transfer runs with, and the options acknowledged (empty: send no OACK)."""

    blksize: int
    timeout: float
    windowsize: int
    acknowledged: dict[str, str]


def negotiate(
    requested: dict[str, str],
    size: int | None,
    *,
    max_blksize: int,
    timeout: float,
) -> Negotiated:
    """Apply RFC 2347/2348/2349/7440 to the client's options. Out-of-range or non-numeric
    values, and options we don't know, are left out of the OACK, as the RFCs allow."""
    result = Negotiated(DEFAULT_BLKSIZE, timeout, 1, {})
    for raw_name, raw_value in requested.items():
        name = raw_name.lower()
        try:
            value = int(raw_value)
        except ValueError:
            continue
        if name == "blksize" and value >= MIN_BLKSIZE:
            result.blksize = min(value, max_blksize, MAX_BLKSIZE)
            result.acknowledged["blksize"] = str(result.blksize)
        elif name == "tsize" and value >= 0 and size is not None:
            result.acknowledged["tsize"] = str(size)
        elif name == "timeout" and MIN_TIMEOUT <= value <= MAX_TIMEOUT:
            result.timeout = float(value)
            result.acknowledged["timeout"] = str(value)
        elif name == "windowsize" and value >= MIN_WINDOWSIZE:
            result.windowsize = min(value, MAX_WINDOWSIZE)
            result.acknowledged["windowsize"] = str(result.windowsize)
    return result


class NotAFile(OSError):
    """A directory, device or FIFO: answered like a missing file."""


def open_regular(path: Path) -> tuple[int, int]:
    """Open a regular file for reading; (fd, size). O_NONBLOCK so a FIFO can't hang us."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotAFile(f"{path} is not a regular file")
    return fd, info.st_size


def read_chunk(fd: int, offset: int, length: int, netascii: bool) -> tuple[int, bytes]:
    """One read-ahead chunk (runs in the executor): (bytes read from the file, wire data).

    netascii translation is byte-local (CR -> CR NUL, LF -> CR LF), so chunk borders don't
    matter."""
    data = os.pread(fd, length, offset)
    raw = len(data)
    if netascii:
        data = data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")
    return raw, data


class _ListenProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: TftpServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self.server._on_request(data, addr)
        except Exception:  # a bug must not take the listening socket down
            self.server.stats["malformed"] += 1
            log.exception("tftp: dropped a request from %s:%s", *addr[:2])

    def error_received(self, exc: Exception) -> None:
        log.debug("tftp: listening socket error: %s", exc)


class _TransferProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transfer: Transfer | None = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.transfer is not None:
            self.transfer.on_packet(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("tftp: transfer socket error: %s", exc)


class Transfer:
    """One RRQ: a go-back-N sender (window 1 is RFC 1350 lockstep) driven by callbacks.

    Block numbers are kept absolute (0 is the OACK, 1 the first DATA) and wrapped to 16 bits
    only on the wire, so files over 32 MiB at blksize 512 roll over to block 0 like tftp-hpa.
    """

    def __init__(
        self,
        server: TftpServer,
        transport: asyncio.DatagramTransport,
        client: Address,
        name: str,
        fd: int,
        options: Negotiated,
        netascii: bool,
        request: bytes,
        started: float,
    ) -> None:
        self.server = server
        self.transport = transport
        self.client = client
        self.name = name
        self.request = request
        self.options = options
        self.started = started
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        self._netascii = netascii
        self._oack = oack_packet(options.acknowledged) if options.acknowledged else b""
        self._base = 0 if self._oack else 1  # oldest block not yet acknowledged
        self._next = self._base  # next block never sent
        self._last: int | None = None  # final block number, once EOF was read
        self._data = b""  # wire bytes from stream offset _data_offset on
        self._data_offset = 0
        self._file_offset = 0
        self._reading = False
        self._tries = 0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._chunk = max(READ_CHUNK, options.blksize * options.windowsize)
        self.done = False

    @property
    def awaiting_first_ack(self) -> bool:
        """True until the client acknowledged the OACK or DATA 1 (a repeated RRQ is a dup)."""
        return self._base == (0 if self._oack else 1)

    # -- starting and finishing ------------------------------------------------------------

    def start(self) -> None:
        self._refill()
        self._pump()

    def close(self) -> None:
        """Release socket, timer and file; the fd waits for an in-flight read."""
        if self.done:
            return
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
        self.transport.close()
        if not self._reading:
            os.close(self._fd)
        self.server._transfers.discard(self)

    def _finish(self) -> None:
        seconds = time.monotonic() - self.started
        size = self._data_offset + len(self._data)
        blksize = self.options.blksize
        rate = size / seconds / 1e6 if seconds > 0 else 0.0
        self.server.stats["completed"] += 1
        self.server.stats["bytes"] += size
        log.info(
            "tftp sent %s to %s:%s: %d bytes, blksize %d, window %d, %.3f s, %.1f MB/s",
            self.name,
            *self.client,
            size,
            blksize,
            self.options.windowsize,
            seconds,
            rate,
        )
        self.server._record(
            "tftp",
            self.client,
            file=self.name,
            size=size,
            blksize=blksize,
            seconds=round(seconds, 3),
        )
        self.close()

    def _fail(self, stat_key: str, reason: str, quiet: bool = False) -> None:
        """End the transfer; quiet for the tsize probe PXE ROMs abort on purpose."""
        self.server.stats[stat_key] += 1
        level = logging.INFO if quiet else logging.WARNING
        log.log(level, "tftp %s to %s:%s ended: %s", self.name, *self.client, reason)
        if not quiet:
            self.server._record("tftp-failed", self.client, file=self.name, reason=reason)
        self.close()

    # -- data ------------------------------------------------------------------------------

    def _available(self, block: int) -> bool:
        end = block * self.options.blksize
        have = self._data_offset + len(self._data)
        return end <= have or (self._last is not None and block <= self._last)

    def _packet(self, block: int) -> bytes:
        if block == 0:
            return self._oack
        blksize = self.options.blksize
        start = (block - 1) * blksize - self._data_offset
        return _HEAD.pack(OP_DATA, block & 0xFFFF) + self._data[start : start + blksize]

    def _refill(self) -> None:
        """Start a read when less than half a chunk is buffered past what was sent."""
        if self._reading or self._last is not None or self.done:
            return
        sent_until = max(self._next - 1, 0) * self.options.blksize
        if self._data_offset + len(self._data) - sent_until >= self._chunk // 2:
            return
        self._reading = True
        future = self._loop.run_in_executor(
            None, read_chunk, self._fd, self._file_offset, self._chunk, self._netascii
        )
        future.add_done_callback(self._on_read)

    def _on_read(self, future: asyncio.Future[tuple[int, bytes]]) -> None:
        self._reading = False
        if self.done:
            os.close(self._fd)
            return
        try:
            raw, data = future.result()
        except OSError as exc:
            self._send(error_packet(ERR_NOT_FOUND))
            self._fail("read_errors", f"read error: {exc}")
            return
        keep_from = max(self._base - 1, 0) * self.options.blksize - self._data_offset
        self._data = self._data[keep_from:] + data
        self._data_offset += keep_from
        self._file_offset += raw
        if raw < self._chunk:
            total = self._data_offset + len(self._data)
            self._last = total // self.options.blksize + 1
        self._pump()

    # -- sending ---------------------------------------------------------------------------

    def _send(self, packet: bytes) -> None:
        self.transport.sendto(packet, self.client)

    def _pump(self) -> None:
        """Send new blocks up to the window's end, as far as data is buffered."""
        if self.done:
            return
        limit = 1 if self._base == 0 else self._base + self.options.windowsize
        if self._last is not None:
            limit = min(limit, self._last + 1)
        sent = False
        while self._next < limit and self._available(self._next):
            self._send(self._packet(self._next))
            self._next += 1
            sent = True
        if sent:
            self._arm()
        self._refill()

    def _arm(self) -> None:
        """Push the retransmission deadline; one timer per transfer, re-armed lazily."""
        self._deadline = self._loop.time() + self.options.timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.done or self._next == self._base:
            return
        now = self._loop.time()
        if now < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        self._tries += 1
        if self._tries >= self.server.retries:
            self._fail("timeouts", f"no ACK for block {self._base} after {self._tries} tries")
            return
        self.server.stats["retransmits"] += self._next - self._base
        for block in range(self._base, self._next):
            self._send(self._packet(block))
        self._arm()

    # -- receiving -------------------------------------------------------------------------

    def on_packet(self, data: bytes, addr: Address) -> None:
        if self.done:
            return
        if addr[:2] != self.client[:2]:
            self.server.stats["wrong_tid"] += 1
            log.debug("tftp: packet from unknown TID %s:%s during %s", *addr[:2], self.name)
            if data[:2] != b"\x00\x05":  # never answer an ERROR with an ERROR
                self.transport.sendto(error_packet(ERR_UNKNOWN_TID), addr)
            return
        if len(data) < 4:
            self.server.stats["malformed"] += 1
            return
        opcode, number = _HEAD.unpack_from(data)
        if opcode == OP_ACK:
            self._on_ack(number)
        elif opcode == OP_ERROR:
            message = data[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
            quiet = number == ERR_OPTIONS and self._base == 0
            self._fail("aborted", f"client sent ERROR {number} {message!r}", quiet)
        else:
            self.server.stats["malformed"] += 1

    def _on_ack(self, number: int) -> None:
        # The one absolute block in [base-1, next-1] whose low 16 bits match.
        acked = self._base - 1 + ((number - (self._base - 1)) & 0xFFFF)
        if acked >= self._next:
            self.server.stats["stray_acks"] += 1
            return
        if acked == self._base - 1:
            # Duplicate ACK: answering it would start the sorcerer's apprentice cascade.
            self.server.stats["duplicate_acks"] += 1
            return
        self._base = acked + 1
        self._tries = 0
        if self._last is not None and acked == self._last:
            self._finish()
            return
        if self._next > self._base:
            # RFC 7440: an ACK inside the window means the client lost the block after it.
            self.server.stats["retransmits"] += self._next - self._base
            self._next = self._base
        self._pump()


class TftpServer:
    """Serves files under root, read-only, to any number of clients at once."""

    def __init__(
        self,
        root: Path,
        records: ClientRecords | None = None,
        *,
        timeout: float = 2.0,
        retries: int = 5,
        max_blksize: int = MAX_BLKSIZE,
        max_transfers: int = 100,
    ) -> None:
        self.root = Path(root)
        self.max_transfers = max_transfers
        self.records = records
        self.timeout = timeout
        self.retries = retries
        self.max_blksize = max(MIN_BLKSIZE, min(max_blksize, MAX_BLKSIZE))
        self.stats: collections.Counter[str] = collections.Counter()
        self._host = "0.0.0.0"
        self._listener: asyncio.DatagramTransport | None = None
        self._transfers: set[Transfer] = set()
        self._starting: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._host = host
        self._listener, _ = await loop.create_datagram_endpoint(
            lambda: _ListenProtocol(self), local_addr=(host, port)
        )
        log.info("tftp serving %s on %s:%d", self.root, host, self.port)

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("TFTP server not started")
        return self._listener.get_extra_info("sockname")[1]

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for task in list(self._starting):
            task.cancel()
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)
        for transfer in list(self._transfers):
            transfer.close()

    # -- requests --------------------------------------------------------------------------

    def _on_request(self, data: bytes, client: Address) -> None:
        opcode = _OPCODE.unpack_from(data)[0] if len(data) >= 2 else 0
        if opcode == OP_WRQ:
            self._refuse(client, _filename(data), ERR_ACCESS, "write request", logging.INFO)
            return
        if opcode != OP_RRQ:
            self._malformed(client, f"opcode {opcode}")
            return
        try:
            request = _codec.parse(data)
        except Exception as exc:  # tftpy raises TftpException, struct.error, Unicode...
            self._malformed(client, f"bad RRQ: {exc}")
            return
        assert isinstance(request, TftpPacketRRQ)
        if request.mode not in ("octet", "netascii"):
            self._refuse(client, request.filename, ERR_ILLEGAL, f"mode {request.mode!r}")
            return
        same_port = [t for t in self._transfers if t.client == client]
        if any(t.request == data and t.awaiting_first_ack for t in same_port):
            # The client repeated its request before our first packet reached it.
            self.stats["duplicate_requests"] += 1
            return
        for transfer in same_port:
            transfer.close()  # the client started over from the same port
        if len(self._transfers) + len(self._starting) >= self.max_transfers:
            # Full: stay silent like dnsmasq (tftp-max), so the client's own retransmission
            # of the RRQ gets it served a moment later; an ERROR would abort its boot.
            self.stats["busy"] += 1
            log.debug("tftp busy: %d transfers, dropped RRQ from %s", self.max_transfers, client)
            return
        task = asyncio.get_running_loop().create_task(self._begin(request, data, client))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _begin(self, request: TftpPacketRRQ, raw: bytes, client: Address) -> None:
        started = time.monotonic()
        name = request.filename
        try:
            path = confine(self.root, name)
        except UnsafePath as exc:
            self._refuse(client, name, ERR_ACCESS, str(exc))
            return
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, open_regular, path)
        try:
            fd, size = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)  # server closing: don't leak the fd
            raise
        except (FileNotFoundError, NotADirectoryError, NotAFile):
            self._refuse(client, name, ERR_NOT_FOUND, "not found", logging.INFO)
            return
        except OSError as exc:
            self._refuse(client, name, ERR_ACCESS, exc.strerror or str(exc))
            return
        netascii = request.mode == "netascii"
        options = negotiate(
            request.options,
            None if netascii else size,
            max_blksize=self.max_blksize,
            timeout=self.timeout,
        )
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                _TransferProtocol, local_addr=(self._host, 0)
            )
        except BaseException:
            os.close(fd)
            raise
        transfer = Transfer(self, transport, client, name, fd, options, netascii, raw, started)
        protocol.transfer = transfer
        self._transfers.add(transfer)
        self.stats["transfers"] += 1
        log.debug("tftp %s to %s:%s options %s", name, *client, options.acknowledged)
        transfer.start()

    def _refuse(
        self, client: Address, name: str, code: int, reason: str, level: int = logging.WARNING
    ) -> None:
        self.stats["refused"] += 1
        log.log(level, "tftp refused %r to %s:%s: %s", name, *client[:2], reason)
        if self._listener is not None:
            self._listener.sendto(error_packet(code), client)
        self._record("tftp-refused", client, file=name, reason=reason)

    def _malformed(self, client: Address, reason: str) -> None:
        self.stats["malformed"] += 1
        log.debug("tftp: dropped packet from %s:%s: %s", *client[:2], reason)

    def _record(self, kind: str, client: Address, **detail: object) -> None:
        if self.records is not None:
            self.records.event(None, kind, ip=client[0], **detail)


def _close_opened(future: asyncio.Future[tuple[int, int]]) -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result()[0])


def _filename(data: bytes) -> str:
    """Best-effort name from a request we won't parse fully (for the log)."""
    return data[2:].split(b"\x00", 1)[0].decode("ascii", "replace")
