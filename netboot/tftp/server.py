"""Read-only asyncio TFTP server (RFC 1350, 2347, 2348, 2349, 7440) for the iPXE binaries.

It lives on the same event loop as DHCP, so nothing here may block: the file is opened in
the executor, and each packet is handled in a plain callback. This module takes requests on
the listening port and refuses or starts transfers; each transfer (`transfer.py`) then runs
on its own ephemeral UDP port (the RFC 1350 transfer ID), with the options `options.py`
negotiated.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from netboot.datagram import Address, DatagramEndpoint, LeanEndpoint, open_endpoint
from netboot.paths import UnsafePath, confine
from netboot.ratelimit import limited
from netboot.records import ClientRecords
from netboot.tftp.filecache import FileCache
from netboot.tftp.options import MAX_BLKSIZE, MIN_BLKSIZE, negotiate
from netboot.tftp.transfer import (
    NotAFile,
    Transfer,
    TransferRequest,
    open_bytes,
    open_regular,
)
from netboot.tftp.wire import (
    ERR_ACCESS,
    ERR_ILLEGAL,
    ERR_NOT_FOUND,
    OP_RRQ,
    OP_WRQ,
    MalformedRequest,
    ReadRequest,
    error_packet,
    opcode,
    parse_rrq,
    request_filename,
)
from netboot.untrusted import for_log

log = logging.getLogger("netboot.tftp")


# A generated file's content for a requested name, or None for "a file of the root". Asked
# in the executor (it may read the disk); the boot layer answers it (BootPolicy.tftp_file).
VirtualFiles = Callable[[str], bytes | None]


class TftpServer:
    """Serves files under root, read-only, to any number of clients at once, and the few
    names `virtual` generates (GRUB's per-client configs)."""

    def __init__(
        self,
        root: Path,
        records: ClientRecords | None = None,
        *,
        timeout: float = 2.0,
        retries: int = 5,
        max_blksize: int = MAX_BLKSIZE,
        max_transfers: int = 500,
        max_per_client: int = 8,
        virtual: VirtualFiles | None = None,
    ) -> None:
        self.root = Path(root)
        self.virtual = virtual
        self.max_transfers = max_transfers
        self.max_per_client = max_per_client
        self.records = records
        self.timeout = timeout
        self.retries = retries
        self.max_blksize = max(MIN_BLKSIZE, min(max_blksize, MAX_BLKSIZE))
        self.stats: collections.Counter[str] = collections.Counter()
        self._host = "0.0.0.0"
        self._listener: DatagramEndpoint | None = None
        self._transfers: set[Transfer] = set()
        self._starting: dict[asyncio.Task[None], str] = {}  # task -> client IP
        self.cache = FileCache()  # small files of the root, shared by their transfers

    async def start(self, host: str, port: int) -> None:
        self._host = host
        # a bug while deciding on a request costs that request, counted as malformed
        listener = DatagramEndpoint(
            self.stats, log, "TFTP request", self._on_request, error_key="malformed"
        )
        self._listener = await open_endpoint(listener, local_addr=(host, port))
        log.info("tftp serving %s on %s:%d", self.root, host, self.port)

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("TFTP server not started")
        return self._listener.port

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
        kind = opcode(data)
        if kind == OP_WRQ:
            self._refuse(client, request_filename(data), ERR_ACCESS, "write request", logging.INFO)
            return
        if kind != OP_RRQ:
            self._malformed(client, f"opcode {kind}", "opcode")
            return
        try:
            request = parse_rrq(data)
        except MalformedRequest as exc:
            self._malformed(client, str(exc), exc.reason)
            return
        if request.mode not in ("octet", "netascii"):
            self._refuse(client, request.filename, ERR_ILLEGAL, f"mode {request.mode!r}")
            return
        same_port = [t for t in self._transfers if t.client == client]
        if any(t.request.raw == data and t.awaiting_first_ack for t in same_port):
            # The client repeated its request before our first packet reached it.
            self.stats["duplicate_requests"] += 1
            return
        for transfer in same_port:
            transfer.close()  # the client started over from the same port
        if not self._room_for(client[0]):
            # Full: stay silent like dnsmasq (tftp-max), so the client's own retransmission
            # of the RRQ gets it served a moment later; an ERROR would abort its boot.
            return
        task = asyncio.get_running_loop().create_task(self._begin(request, data, client))
        self._starting[task] = client[0]
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._starting.pop(task, None)

    def _room_for(self, ip: str) -> bool:
        """May a transfer to `ip` start? At most max_per_client per IP; when all
        max_transfers are taken, the oldest transfer still waiting for its first ACK (most
        likely abandoned: a real client answers within milliseconds) makes room."""
        mine = sum(t.client[0] == ip for t in self._transfers)
        mine += sum(other == ip for other in self._starting.values())
        if mine >= self.max_per_client:
            self.stats["busy_client"] += 1
            limited(log)("busy_client", logging.INFO, "tftp: %s has %d transfers open", ip, mine)
            return False
        if len(self._transfers) + len(self._starting) < self.max_transfers:
            return True
        waiting = [t for t in self._transfers if t.awaiting_first_ack]
        if waiting:
            oldest = min(waiting, key=lambda t: t.request.started)
            self.stats["evicted_unacknowledged"] += 1
            oldest.close()
            return True
        self.stats["busy"] += 1
        limited(log)("busy", logging.WARNING, "tftp busy: %d transfers", self.max_transfers)
        return False

    async def _begin(self, request: ReadRequest, raw: bytes, client: Address) -> None:
        started = time.monotonic()
        name = request.filename
        try:
            path = confine(self.root, name)
        except UnsafePath as exc:
            self._refuse(client, name, ERR_ACCESS, str(exc))
            return
        loop = asyncio.get_running_loop()
        netascii = request.mode == "netascii"
        opening = loop.run_in_executor(None, self._open, name, path, netascii)
        try:
            fd, size, content = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)  # server closing: don't leak the fd
            raise
        except (FileNotFoundError, NotADirectoryError, NotAFile):
            self._refuse(client, name, ERR_NOT_FOUND, "not found", logging.INFO)
            return
        except OSError as exc:
            self._refuse(client, name, ERR_ACCESS, exc.strerror or str(exc))
            return
        options = negotiate(
            request.options,
            None if netascii else size,
            max_blksize=self.max_blksize,
            timeout=self.timeout,
        )
        try:
            endpoint = LeanEndpoint(self.stats, log, "TFTP packet").open(self._host)
        except BaseException:
            _close(fd)
            raise
        accepted = TransferRequest(client, name, raw, netascii, started, size)
        transfer = Transfer(self, endpoint, accepted, fd, options, self.retries, content)
        self._starting.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        self._transfers.add(transfer)  # counted once: no longer starting, now transferring
        self.stats["transfers"] += 1
        log.debug("tftp %s to %s:%s options %s", for_log(name), *client, options.acknowledged)
        transfer.start()

    def _open(self, name: str, path: Path, netascii: bool) -> tuple[int, int, bytes | None]:
        """(fd, size, None) of a generated file when `virtual` makes one, else of the root's
        file; (-1, size, content) when the root's file is small enough to be served from
        the shared cache (octet mode only: netascii translates as it reads)."""
        if self.virtual is not None:
            generated = self.virtual(name)
            if generated is not None:
                self.stats["virtual"] += 1
                return (*open_bytes(generated), None)
        fd, size = open_regular(path)
        if netascii:
            return fd, size, None
        try:
            content = self.cache.content(fd)
        except OSError:
            content = None
        if content is None:
            return fd, size, None
        os.close(fd)
        self.stats["cached"] += 1
        return -1, len(content), content

    def _refuse(
        self, client: Address, name: str, code: int, reason: str, level: int = logging.WARNING
    ) -> None:
        self.stats["refused"] += 1
        limited(log)(
            f"refused_{code}",
            level,
            "tftp refused %s to %s:%s: %s",
            for_log(name),
            *client[:2],
            for_log(reason),
        )
        if self._listener is not None:
            self._listener.send(error_packet(code), client)
        self.record("tftp-refused", client, file=name, reason=reason)

    def _malformed(self, client: Address, detail: str, reason: str) -> None:
        """Dropped without an answer, counted as `malformed` and `malformed_<reason>`."""
        self.stats["malformed"] += 1
        self.stats[f"malformed_{reason}"] += 1
        limited(log)(
            f"malformed_{reason}",
            logging.INFO,
            "tftp: dropped packet from %s:%s: %s",
            *client[:2],
            for_log(detail),
        )

    def progress(self) -> list[dict[str, object]]:
        """The transfers under way (call on the server's loop, which owns them)."""
        return [transfer.progress() for transfer in self._transfers if not transfer.done]

    # -- what transfers may ask of their server (transfer.TransferHost) --------------------

    def finished(self, transfer: Transfer) -> None:
        self._transfers.discard(transfer)

    def record(self, kind: str, client: Address, **detail: object) -> None:
        if self.records is not None:
            self.records.event(None, kind, ip=client[0], **detail)


def _close_opened(future: asyncio.Future[tuple[int, int, bytes | None]]) -> None:
    if not future.cancelled() and future.exception() is None:
        _close(future.result()[0])


def _close(fd: int) -> None:
    if fd >= 0:  # -1: served from the cache, no file held open
        os.close(fd)
