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
from pathlib import Path

from tftpy.TftpPacketTypes import TftpPacketRRQ

from netboot.datagram import Address, DatagramEndpoint, open_endpoint
from netboot.paths import UnsafePath, confine
from netboot.records import ClientRecords
from netboot.tftp.options import MAX_BLKSIZE, MIN_BLKSIZE, negotiate
from netboot.tftp.transfer import NotAFile, Transfer, TransferRequest, open_regular
from netboot.tftp.wire import (
    ERR_ACCESS,
    ERR_ILLEGAL,
    ERR_NOT_FOUND,
    OP_RRQ,
    OP_WRQ,
    error_packet,
    opcode,
    parse_rrq,
    request_filename,
)

log = logging.getLogger("netboot.tftp")


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
        self._listener: DatagramEndpoint | None = None
        self._transfers: set[Transfer] = set()
        self._starting: set[asyncio.Task[None]] = set()

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
            self._malformed(client, f"opcode {kind}")
            return
        try:
            request = parse_rrq(data)
        except Exception as exc:  # tftpy raises TftpException, struct.error, Unicode...
            self._malformed(client, f"bad RRQ: {exc}")
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
            endpoint = await open_endpoint(
                DatagramEndpoint(self.stats, log, "TFTP packet"), local_addr=(self._host, 0)
            )
        except BaseException:
            os.close(fd)
            raise
        accepted = TransferRequest(client, name, raw, netascii, started, size)
        transfer = Transfer(self, endpoint, accepted, fd, options, self.retries)
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
            self._listener.send(error_packet(code), client)
        self.record("tftp-refused", client, file=name, reason=reason)

    def _malformed(self, client: Address, reason: str) -> None:
        self.stats["malformed"] += 1
        log.debug("tftp: dropped packet from %s:%s: %s", *client[:2], reason)

    def progress(self) -> list[dict[str, object]]:
        """The transfers under way (call on the server's loop, which owns them)."""
        return [transfer.progress() for transfer in self._transfers if not transfer.done]

    # -- what transfers may ask of their server (transfer.TransferHost) --------------------

    def finished(self, transfer: Transfer) -> None:
        self._transfers.discard(transfer)

    def record(self, kind: str, client: Address, **detail: object) -> None:
        if self.records is not None:
            self.records.event(None, kind, ip=client[0], **detail)


def _close_opened(future: asyncio.Future[tuple[int, int]]) -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result()[0])
