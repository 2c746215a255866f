"""The lean lock-step path (LeanEndpoint, the shared file cache) against real clients over
127.0.0.1: a file replaced while it is served, an ACK lost on the way, a handler bug."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
from pathlib import Path

import pytest
from test_tftp import HOST, RawClient, fetch_raw, parse, rrq, tftp_hpa_get, until

from netboot.datagram import LeanEndpoint
from netboot.tftp import TftpServer
from netboot.tftp.filecache import FileCache

SIZE = 100 * 1024 + 17  # 201 blocks of 512, the last one short


async def started(root: Path, **kwargs) -> TftpServer:
    server = TftpServer(root, **kwargs)
    await server.start(HOST, 0)
    return server


async def test_replaced_file_is_new_for_the_next_client_never_a_mix(tmp_path: Path):
    """A transfer under way keeps the version it started with, whole; a client that asks
    after the file was replaced (renamed over) or rewritten in place gets the new one."""
    root = tmp_path / "root"
    root.mkdir()
    old, renamed, rewritten = (os.urandom(SIZE) for _ in range(3))
    served = root / "ipxe.efi"
    served.write_bytes(old)
    server = await started(root)
    try:
        async with RawClient() as client:
            client.send(rrq("ipxe.efi"), server.port)
            first, tid = await client.recv()  # under way, from the cache
            (root / "new").write_bytes(renamed)
            os.replace(root / "new", served)
            assert (await tftp_hpa_get(server.port, "ipxe.efi", tmp_path / "a")) == b""
            assert (tmp_path / "a").read_bytes() == renamed
            served.write_bytes(rewritten)  # same inode, same size: mtime and ctime differ
            assert (await tftp_hpa_get(server.port, "ipxe.efi", tmp_path / "b")) == b""
            assert (tmp_path / "b").read_bytes() == rewritten
            assert await fetch_raw(client, server.port, first, tid) == old
        assert server.stats["cached"] == 3
        assert server.cache.misses == 3 and server.cache.hits == 0
        assert (await tftp_hpa_get(server.port, "ipxe.efi", tmp_path / "c")) == b""
        assert (tmp_path / "c").read_bytes() == rewritten and server.cache.hits == 1
        await until(lambda: server.stats["completed"] == 4)
    finally:
        await server.close()


def test_cache_is_bounded(tmp_path: Path):
    """Files over max_file are not kept; the total stays under max_total (oldest out)."""
    cache = FileCache(max_file=4096, max_total=10000)
    contents = [os.urandom(4000) for _ in range(4)]
    for i, data in enumerate(contents):
        (tmp_path / f"f{i}").write_bytes(data)
    (tmp_path / "big").write_bytes(os.urandom(5000))
    for i, data in enumerate(contents):
        fd = os.open(tmp_path / f"f{i}", os.O_RDONLY)
        try:
            assert cache.content(fd) == data
        finally:
            os.close(fd)
        assert cache.size <= 10000
    fd = os.open(tmp_path / "big", os.O_RDONLY)
    try:
        assert cache.content(fd) is None
    finally:
        os.close(fd)
    assert cache.size == 8000  # the two newest


class AckDropper:
    """A UDP relay between tftp-hpa and the server that drops the ACK of one block once,
    as a lossy link would: tftp-hpa talks to `port`, the server sees the relay's socket."""

    def __init__(self, server_port: int, drop_block: int) -> None:
        self.server = (HOST, server_port)
        self.drop_block = drop_block
        self.dropped = 0
        self.client: tuple[str, int] | None = None
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (self.front, self.back):
            sock.bind((HOST, 0))
            sock.setblocking(False)
        self.port = self.front.getsockname()[1]
        loop = asyncio.get_running_loop()
        loop.add_reader(self.front.fileno(), self._from_client)
        loop.add_reader(self.back.fileno(), self._from_server)

    def _from_client(self) -> None:
        data, self.client = self.front.recvfrom(2048)
        if data[:2] == b"\x00\x04" and parse(data)[1] == self.drop_block and not self.dropped:
            self.dropped += 1
            return
        self.back.sendto(data, self.server)

    def _from_server(self) -> None:
        data, self.server = self.back.recvfrom(2048)  # the transfer's own port from now on
        if self.client is not None:
            self.front.sendto(data, self.client)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in (self.front, self.back):
            loop.remove_reader(sock.fileno())
            sock.close()


async def test_tftp_hpa_recovers_from_a_lost_ack(tmp_path: Path):
    """Lock-step at 512 with no options, the ACK of block 3 lost: the server's retransmit
    timer sends DATA 3 again, tftp-hpa re-ACKs it, and the file arrives whole."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(content := os.urandom(SIZE))
    server = await started(root, timeout=0.3)
    relay = AckDropper(server.port, drop_block=3)
    try:
        assert (await tftp_hpa_get(relay.port, "ipxe.efi", tmp_path / "got")) == b""
        assert (tmp_path / "got").read_bytes() == content
        assert relay.dropped == 1
        assert server.stats["retransmits"] >= 1
        await until(lambda: server.stats["completed"] == 1)
    finally:
        relay.close()
        await server.close()


async def test_lean_endpoint_handler_bug_costs_one_packet(caplog: pytest.LogCaptureFixture):
    stats: collections.Counter[str] = collections.Counter()
    got: list[bytes] = []

    def handler(data: bytes, addr: tuple[str, int]) -> None:
        if data == b"boom":
            raise ValueError("a bug")
        got.append(data)

    endpoint = LeanEndpoint(stats, logging.getLogger("test"), "test packet", handler)
    endpoint.open(HOST)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for payload in (b"boom", b"fine"):
            sender.sendto(payload, (HOST, endpoint.port))
        await until(lambda: got == [b"fine"])
        assert stats["errors"] == 1
        assert "error handling a test packet" in caplog.text
    finally:
        sender.close()
        endpoint.close()


async def test_server_stops_retransmitting_once_acknowledged(tmp_path: Path):
    """The one retransmit timer is re-armed lazily: a transfer acknowledged to the end
    sends each block once (no stale deadline fires a copy)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(content := os.urandom(SIZE))
    server = await started(root, timeout=0.2)
    try:
        async with RawClient() as client:
            client.send(rrq("f"), server.port)
            first, tid = await client.recv()
            assert await fetch_raw(client, server.port, first, tid) == content
            assert await client.silent(0.6)
        assert server.stats["retransmits"] == 0 and server.stats["completed"] == 1
    finally:
        await server.close()


async def test_lean_endpoint_reads_a_burst_per_wake_up_and_stops_when_closed():
    """With `batch`, the datagrams queued before the loop looks are read in one pass
    (a DHCP storm's burst); a handler that closes the endpoint ends the pass there."""
    stats: collections.Counter[str] = collections.Counter()
    got: list[bytes] = []
    passes: list[int] = []

    def handler(data: bytes, addr: tuple[str, int]) -> None:
        got.append(data)
        if data == b"close":
            endpoint.close()

    endpoint = LeanEndpoint(stats, logging.getLogger("test"), "test packet", handler, batch=8)
    endpoint.open(HOST)
    readable = endpoint._readable

    def counted() -> None:
        before = len(got)
        readable()
        passes.append(len(got) - before)

    loop = asyncio.get_running_loop()
    loop.remove_reader(endpoint.sock.fileno())  # type: ignore[union-attr]
    loop.add_reader(endpoint.sock.fileno(), counted)  # type: ignore[union-attr]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(20):  # queued before the loop runs again
            sender.sendto(b"%d" % i, (HOST, endpoint.port))
        await until(lambda: len(got) == 20)
        assert passes[:3] == [8, 8, 4]
        assert got == [b"%d" % i for i in range(20)]
        for payload in (b"close", b"after"):
            sender.sendto(payload, (HOST, endpoint.port))
        await until(lambda: endpoint.sock is None)
        await asyncio.sleep(0.05)
        assert got[-1] == b"close" and stats["errors"] == 0
    finally:
        sender.close()
        endpoint.close()
