"""One TFTP read transfer: a go-back-N sender on its own UDP port, driven by callbacks.

A transfer knows its client, its file and its negotiated options; of its server it knows
only the narrow `TransferHost` (count, record, "I have ended"), so it can be driven and
tested on its own. File reads run in the executor in read-ahead chunks, or the whole file
comes from the shared cache (filecache.py): nothing here blocks the loop that also answers
DHCP. The per-ACK path (`on_packet` -> `_on_ack` -> `_pump`) is the server's hottest code:
a lock-step client costs one pass per 512-byte block (docs/tftp.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from netboot.datagram import Address, DatagramEndpoint
from netboot.ratelimit import limited
from netboot.tftp.options import Negotiated
from netboot.tftp.wire import (
    ERR_NOT_FOUND,
    ERR_OPTIONS,
    ERR_UNKNOWN_TID,
    HEAD,
    OP_ACK,
    OP_DATA,
    OP_ERROR,
    data_packet,
    error_packet,
    oack_packet,
)
from netboot.untrusted import for_log

log = logging.getLogger("netboot.tftp")

READ_CHUNK = 256 * 1024
FIRST_ACK_TRIES = 2  # a client that never acknowledges our first packet is given up early


class TransferHost(Protocol):
    """What a transfer may ask of its server."""

    stats: Counter[str]

    def finished(self, transfer: Transfer) -> None:
        """The transfer has ended (completed, failed or closed) and released its socket."""

    def record(self, kind: str, client: Address, **detail: object) -> None:
        """Note a step in the client's record (`tftp`, `tftp-failed`)."""


@dataclass(frozen=True)
class TransferRequest:
    """An accepted RRQ: who asked, for what, and the raw packet (an identical one repeated
    before our first packet arrived is a duplicate, not a new request)."""

    client: Address
    name: str
    raw: bytes
    netascii: bool
    started: float  # time.monotonic() when the RRQ arrived
    size: int | None = None  # the file's size when it was opened (the status page's 100 %)


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


def open_bytes(content: bytes) -> tuple[int, int]:
    """An anonymous in-memory file holding `content`; (fd, size), read like a real file."""
    fd = os.memfd_create("netboot-tftp", os.MFD_CLOEXEC)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd, len(content)


def read_chunk(fd: int, offset: int, length: int, netascii: bool) -> tuple[int, bytes]:
    """One read-ahead chunk (runs in the executor): (bytes read from the file, wire data).

    netascii translation is byte-local (CR -> CR NUL, LF -> CR LF), so chunk borders don't
    matter."""
    data = os.pread(fd, length, offset)
    raw = len(data)
    if netascii:
        data = data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")
    return raw, data


class Transfer:
    """One RRQ: a go-back-N sender (window 1 is RFC 1350 lockstep) driven by callbacks.

    Block numbers are kept absolute (0 is the OACK, 1 the first DATA) and wrapped to 16 bits
    only on the wire, so files over 32 MiB at blksize 512 roll over to block 0 like tftp-hpa.
    """

    def __init__(
        self,
        host: TransferHost,
        endpoint: DatagramEndpoint,
        request: TransferRequest,
        fd: int,
        options: Negotiated,
        retries: int,
        content: bytes | None = None,
    ) -> None:
        """`fd` is read ahead chunk by chunk; or, with `content` (the whole file, shared
        with other transfers: filecache.py), fd is -1 and nothing is read or buffered."""
        self.host = host
        self.stats = host.stats
        self.endpoint = endpoint
        self.request = request
        self.client = request.client
        self.name = request.name
        self.options = options
        self.retries = retries
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        self._netascii = request.netascii
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
        self._refill_at = 0  # _pump checks for a read from this block on
        self._blksize, self._window = options.blksize, options.windowsize
        if content is not None:
            self._data = content
            self._last = len(content) // options.blksize + 1
            self._refill_at = self._last + 1  # never: _refill returns once _last is known
        self._send_to = endpoint.send
        self.done = False

    @property
    def awaiting_first_ack(self) -> bool:
        """True until the client acknowledged the OACK or DATA 1 (a repeated RRQ is a dup)."""
        return self._base == (0 if self._oack else 1)

    def progress(self) -> dict[str, object]:
        """For the status page: the bytes the client acknowledged so far."""
        return {
            "protocol": "tftp",
            "ip": self.client[0],
            "file": self.name,
            "bytes": max(0, self._base - 1) * self.options.blksize,
            "size": self.request.size,
            "seconds": round(time.monotonic() - self.request.started, 3),
        }

    # -- starting and finishing ------------------------------------------------------------

    def start(self) -> None:
        self.endpoint.handler = self.on_packet
        self.endpoint.on_error = self.on_socket_error
        self.endpoint.report_icmp_errors()
        self._refill()
        self._pump()

    def close(self) -> None:
        """Release socket, timer and file; the fd waits for an in-flight read."""
        if self.done:
            return
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._data = b""  # the read-ahead goes now, whoever still holds this object
        self.endpoint.close()
        if not self._reading and self._fd >= 0:
            os.close(self._fd)
        self.host.finished(self)

    def _finish(self) -> None:
        seconds = time.monotonic() - self.request.started
        size = self._data_offset + len(self._data)
        blksize = self.options.blksize
        rate = size / seconds / 1e6 if seconds > 0 else 0.0
        self.stats["completed"] += 1
        self.stats["bytes"] += size
        log.info(
            "tftp sent %s to %s:%s: %d bytes, blksize %d, window %d, %.3f s, %.1f MB/s",
            for_log(self.name),
            *self.client,
            size,
            blksize,
            self.options.windowsize,
            seconds,
            rate,
        )
        self.host.record(
            "tftp",
            self.client,
            file=self.name,
            size=size,
            blksize=blksize,
            seconds=round(seconds, 3),
        )
        self.close()

    def _fail(self, stat_key: str, reason: str, quiet: bool = False) -> None:
        """End the transfer; quiet (one info line, no record) for the tsize probe PXE ROMs
        abort on purpose. Otherwise logged at most once a minute per kind of ending (a flood
        of abandoned RRQs is one line) and recorded (a stranger's only as a rate-limited
        line: records.event)."""
        self.stats[stat_key] += 1
        level = logging.INFO if quiet else logging.WARNING
        if quiet:
            log.info("tftp %s to %s:%s ended: %s", for_log(self.name), *self.client, reason)
        else:
            limited(log)(
                f"ended_{stat_key}",
                level,
                "tftp %s to %s:%s ended: %s",
                for_log(self.name),
                *self.client,
                for_log(reason, 160),
            )
            self.host.record("tftp-failed", self.client, file=self.name, reason=reason)
        self.close()

    def on_socket_error(self, exc: Exception) -> None:
        """ICMP port unreachable: the client has closed its port, nobody will ACK."""
        if not self.done and isinstance(exc, ConnectionRefusedError):
            # before the first ACK it is a ROM closing its tsize probe's port: quiet
            quiet = self.awaiting_first_ack
            self._fail("unreachable", "client port unreachable (ICMP)", quiet)

    # -- data ------------------------------------------------------------------------------

    def _packet(self, block: int) -> bytes:
        if block == 0:
            return self._oack
        blksize = self.options.blksize
        start = (block - 1) * blksize - self._data_offset
        return data_packet(block, self._data[start : start + blksize])

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
        buffered = self._data_offset + len(self._data)
        if raw < self._chunk:
            self._last = buffered // self.options.blksize + 1
        # no sooner than _refill would start the next read (it checks exactly)
        self._refill_at = max(buffered - self._chunk // 2, 0) // self.options.blksize + 1
        self._pump()

    # -- sending ---------------------------------------------------------------------------

    def _send(self, packet: bytes) -> None:
        self._send_to(packet, self.client)

    def _pump(self) -> None:
        """Send new blocks up to the window's end, as far as data is buffered.

        The per-ACK path (lock-step: once per block), so it works on locals and makes no
        call per block but the send; see docs/tftp.md for what a block costs."""
        if self.done:
            return
        block = self._next
        limit = 1 if self._base == 0 else self._base + self._window
        last = self._last
        blksize, data, offset = self._blksize, self._data, self._data_offset
        # the first block past what is buffered (all of the file once EOF was read)
        ready = last + 1 if last is not None else (offset + len(data)) // blksize + 1
        if limit > ready:
            limit = ready
        if block < limit:
            send, client, pack = self._send_to, self.client, HEAD.pack
            if block == 0:
                send(self._oack, client)
                block = 1
            while block < limit:
                start = (block - 1) * blksize - offset
                send(pack(OP_DATA, block & 0xFFFF) + data[start : start + blksize], client)
                block += 1
            self._next = block
            self._arm()
        if block >= self._refill_at:
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
        if self.awaiting_first_ack and self._tries >= min(FIRST_ACK_TRIES, self.retries):
            # nobody is listening (a scan, a spoofed RRQ, a client that gave up)
            self._fail("no_first_ack", f"no ACK of the first packet after {self._tries} tries")
            return
        if self._tries >= self.retries:
            self._fail("timeouts", f"no ACK for block {self._base} after {self._tries} tries")
            return
        self.stats["retransmits"] += self._next - self._base
        for block in range(self._base, self._next):
            self._send(self._packet(block))
        self._arm()

    # -- receiving -------------------------------------------------------------------------

    def on_packet(self, data: bytes, addr: Address) -> None:
        if self.done:
            return
        if addr != self.client and addr[:2] != self.client[:2]:
            self.stats["wrong_tid"] += 1
            log.debug(
                "tftp: packet from unknown TID %s:%s during %s", *addr[:2], for_log(self.name)
            )
            if data[:2] != b"\x00\x05":  # never answer an ERROR with an ERROR
                self.endpoint.send(error_packet(ERR_UNKNOWN_TID), addr)
            return
        if len(data) < 4:
            self.stats["malformed"] += 1
            return
        opcode, number = HEAD.unpack_from(data)
        if opcode == OP_ACK:
            self._on_ack(number)
        elif opcode == OP_ERROR:
            message = data[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
            quiet = number == ERR_OPTIONS and self._base == 0
            self._fail("aborted", f"client sent ERROR {number} {message!r}", quiet)
        else:
            self.stats["malformed"] += 1

    def _on_ack(self, number: int) -> None:
        # The one absolute block in [base-1, next-1] whose low 16 bits match.
        acked = self._base - 1 + ((number - (self._base - 1)) & 0xFFFF)
        if acked >= self._next:
            self.stats["stray_acks"] += 1
            return
        if acked == self._base - 1:
            # Duplicate ACK: answering it would start the sorcerer's apprentice cascade.
            self.stats["duplicate_acks"] += 1
            return
        self._base = acked + 1
        self._tries = 0
        if self._last is not None and acked == self._last:
            self._finish()
            return
        if self._next > self._base:
            # RFC 7440: an ACK inside the window means the client lost the block after it.
            self.stats["retransmits"] += self._next - self._base
            self._next = self._base
        self._pump()
