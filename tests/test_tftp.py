"""The TFTP server against real clients (tftp-hpa, busybox, atftp, curl, tftpy) and a raw
socket client that misbehaves on purpose, all over 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import struct
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import tftpy

import netboot.tftp.server as tftp_server
from netboot.records import ClientRecords
from netboot.tftp import TftpServer

IPXE_BINARY = Path("/usr/lib/ipxe/undionly.kpxe")
HOST = "127.0.0.1"
MAC = "52:54:00:12:34:56"
IPXE_SIZE = IPXE_BINARY.stat().st_size
RANDOM_SIZE = 4 * 1024 * 1024  # an exact multiple of 512: the last DATA block is empty


def same(got: Path, expected: Path) -> bool:
    return got.read_bytes() == expected.read_bytes()


async def until(condition, limit: float = 2.0) -> None:
    """Wait for the server to process a packet we just sent."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tftproot")
    (root / "ipxe").mkdir()
    shutil.copyfile(IPXE_BINARY, root / "ipxe" / "undionly.kpxe")
    (root / "random.bin").write_bytes(os.urandom(RANDOM_SIZE))
    (root / "two-blocks.bin").write_bytes(os.urandom(1024))
    (root / "small.txt").write_bytes(b"line one\nline two\r\nbare\rcr\n")
    outside = tmp_path_factory.mktemp("outside") / "secret"
    outside.write_bytes(b"not for clients")
    (root / "escape").symlink_to(outside)
    (root / "inside-link").symlink_to(root / "two-blocks.bin")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
async def records() -> ClientRecords:
    records = ClientRecords()
    records.learn(MAC, HOST)
    return records


async def started(root: Path, records: ClientRecords | None = None, **kwargs) -> TftpServer:
    server = TftpServer(root, records, **kwargs)
    await server.start(HOST, 0)
    return server


@pytest.fixture
async def server(root: Path, records: ClientRecords) -> AsyncIterator[TftpServer]:
    server = await started(root, records)
    yield server
    await server.close()


async def run(*cmd: str, stdin: bytes | None = None, limit: float = 60) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), limit)
    return proc.returncode or 0, out


async def tftp_hpa_get(port: int, name: str, dest: Path, mode: str = "binary") -> bytes:
    """tftp-hpa 5.2's client has no option support: plain RFC 1350 lockstep at 512."""
    _, out = await run("tftp", "-m", mode, HOST, str(port), "-c", "get", name, str(dest))
    return out


async def busybox_get(port: int, name: str, dest: Path, blksize: int) -> None:
    code, out = await run(
        "busybox", "tftp", "-b", str(blksize), "-g", "-r", name, "-l", str(dest), HOST, str(port)
    )
    assert code == 0, out


def tftpy_get(port: int, name: str, dest: Path, options: dict[str, int]) -> None:
    tftpy.TftpClient(HOST, port, options).download(name, str(dest), timeout=5)


class RawClient:
    """A UDP socket we drive by hand: what a buggy or lossy PXE ROM would do."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> RawClient:
        queue = self.queue

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                queue.put_nowait((data, addr))

        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(HOST, 0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.transport is not None
        self.transport.close()

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (HOST, port))

    async def recv(self, limit: float = 3.0) -> tuple[bytes, int]:
        data, addr = await asyncio.wait_for(self.queue.get(), limit)
        return data, addr[1]

    async def silent(self, seconds: float) -> bool:
        try:
            await self.recv(seconds)
        except TimeoutError:
            return True
        return False


def rrq(name: str | bytes, mode: bytes = b"octet", **options: int | str) -> bytes:
    raw = name if isinstance(name, bytes) else name.encode()
    packet = struct.pack("!H", 1) + raw + b"\0" + mode + b"\0"
    for key, value in options.items():
        packet += key.encode() + b"\0" + str(value).encode() + b"\0"
    return packet


def ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block & 0xFFFF)


def parse(packet: bytes) -> tuple[int, int, bytes]:
    opcode, number = struct.unpack("!HH", packet[:4])
    return opcode, number, packet[4:]


def oack_options(packet: bytes) -> dict[str, str]:
    assert packet[:2] == b"\x00\x06", packet
    fields = packet[2:].split(b"\0")[:-1]
    return {k.decode(): v.decode() for k, v in zip(fields[::2], fields[1::2], strict=True)}


async def fetch_raw(client: RawClient, port: int, first: bytes, tid: int) -> bytes:
    """Lockstep download after the first DATA packet; returns the file's bytes."""
    data = b""
    packet = first
    while True:
        opcode, block, payload = parse(packet)
        assert opcode == 3, packet
        data += payload
        client.send(ack(block), tid)
        if len(payload) < 512:
            return data
        packet, _ = await client.recv()


# -- real clients ---------------------------------------------------------------------------


async def test_tftp_hpa_fetches_ipxe_binary(server: TftpServer, root: Path, tmp_path: Path):
    out = await tftp_hpa_get(server.port, "ipxe/undionly.kpxe", tmp_path / "got")
    assert same(tmp_path / "got", IPXE_BINARY), out
    assert server.stats["completed"] == 1


@pytest.mark.parametrize("options", [{}, {"blksize": 1468}, {"blksize": 1468, "tsize": 0}])
async def test_tftpy_client_fetches_ipxe_binary(server: TftpServer, tmp_path: Path, options):
    dest = tmp_path / "got"
    await asyncio.to_thread(tftpy_get, server.port, "/ipxe/undionly.kpxe", dest, options)
    assert same(dest, IPXE_BINARY)


async def test_busybox_fetches_with_blksize_1468(server: TftpServer, root: Path, tmp_path: Path):
    await busybox_get(server.port, "ipxe/undionly.kpxe", tmp_path / "ipxe", 1468)
    assert same(tmp_path / "ipxe", IPXE_BINARY)
    await busybox_get(server.port, "random.bin", tmp_path / "random", 1468)
    assert same(tmp_path / "random", root / "random.bin")


async def test_multiple_of_512_ends_with_empty_block(
    server: TftpServer, root: Path, tmp_path: Path
):
    out = await tftp_hpa_get(server.port, "random.bin", tmp_path / "random")
    assert same(tmp_path / "random", root / "random.bin"), out
    async with RawClient() as client:
        client.send(rrq("two-blocks.bin"), server.port)
        sizes = []
        while not sizes or sizes[-1] == 512:
            packet, tid = await client.recv()
            opcode, block, payload = parse(packet)
            assert (opcode, block) == (3, len(sizes) + 1)
            sizes.append(len(payload))
            client.send(ack(block), tid)
    assert sizes == [512, 512, 0]


async def test_block_numbers_roll_over_past_65535(root: Path, tmp_path: Path):
    """33 MiB at 512 bytes is 67585 blocks: the counter wraps to 0 as tftp-hpa expects."""
    big_root = tmp_path / "root"
    big_root.mkdir()
    (big_root / "big").write_bytes(os.urandom(33 * 1024 * 1024))
    server = await started(big_root)
    try:
        await tftp_hpa_get(server.port, "big", tmp_path / "big")
    finally:
        await server.close()
    assert same(tmp_path / "big", big_root / "big")


async def test_atftp_windowsize_and_curl_blksize(server: TftpServer, root: Path, tmp_path: Path):
    code, out = await run(
        "atftp", "--option", "windowsize 16", "--option", "blksize 1468",
        "-g", "-r", "random.bin", "-l", str(tmp_path / "atftp"), HOST, str(server.port),
    )  # fmt: skip
    assert code == 0, out
    assert same(tmp_path / "atftp", root / "random.bin")
    code, out = await run(
        "curl", "-sS", "--tftp-blksize", "8192", "-o", str(tmp_path / "curl"),
        f"tftp://{HOST}:{server.port}/random.bin",
    )  # fmt: skip
    assert code == 0, out
    assert same(tmp_path / "curl", root / "random.bin")


async def test_netascii_mode_translates_line_ends(server: TftpServer, root: Path, tmp_path: Path):
    out = await tftp_hpa_get(server.port, "small.txt", tmp_path / "text", mode="ascii")
    # the client undoes CR LF / CR NUL, so a correct server round-trips the bytes exactly
    assert same(tmp_path / "text", root / "small.txt"), out
    async with RawClient() as client:
        client.send(rrq("small.txt", b"netascii"), server.port)
        packet, _ = await client.recv()
    assert parse(packet)[2] == b"line one\r\nline two\r\0\r\nbare\r\0cr\r\n"


async def test_ten_concurrent_transfers(server: TftpServer, root: Path, tmp_path: Path):
    jobs = []
    for i in range(5):
        jobs.append(busybox_get(server.port, "random.bin", tmp_path / f"r{i}", 1468))
        jobs.append(tftp_hpa_get(server.port, "ipxe/undionly.kpxe", tmp_path / f"i{i}"))
    await asyncio.gather(*jobs)
    for i in range(5):
        assert same(tmp_path / f"r{i}", root / "random.bin")
        assert same(tmp_path / f"i{i}", IPXE_BINARY)
    assert server.stats["completed"] == 10
    assert server.stats["transfers"] == 10


async def test_completed_transfer_is_recorded(
    server: TftpServer, records: ClientRecords, tmp_path: Path
):
    await busybox_get(server.port, "ipxe/undionly.kpxe", tmp_path / "got", 1468)
    record = records.get(MAC)
    assert record is not None
    (event,) = [e for e in record.events if e.kind == "tftp"]
    assert event.detail["file"] == "ipxe/undionly.kpxe"
    assert event.detail["size"] == IPXE_SIZE
    assert event.detail["blksize"] == 1468
    assert event.detail["seconds"] >= 0


# -- options ---------------------------------------------------------------------------------


async def test_options_are_acknowledged(server: TftpServer, root: Path):
    size = (root / "random.bin").stat().st_size
    async with RawClient() as client:
        client.send(rrq("random.bin", blksize=1468, tsize=0, timeout=3, bogus=7), server.port)
        packet, tid = await client.recv()
        assert oack_options(packet) == {"blksize": "1468", "tsize": str(size), "timeout": "3"}
        client.send(ack(0), tid)
        packet, _ = await client.recv()
        opcode, block, payload = parse(packet)
        assert (opcode, block, len(payload)) == (3, 1, 1468)
        assert payload == (root / "random.bin").read_bytes()[:1468]


async def test_no_options_means_no_oack(server: TftpServer, root: Path):
    async with RawClient() as client:
        client.send(rrq("two-blocks.bin", bogus=1), server.port)
        packet, tid = await client.recv()
        assert parse(packet)[:2] == (3, 1)
        data = await fetch_raw(client, server.port, packet, tid)
    assert data == (root / "two-blocks.bin").read_bytes()


async def test_blksize_clamped_and_windowsize_capped(root: Path):
    server = await started(root, max_blksize=1024)
    try:
        async with RawClient() as client:
            client.send(rrq("random.bin", blksize=65464, windowsize=1000), server.port)
            packet, _ = await client.recv()
            assert oack_options(packet) == {"blksize": "1024", "windowsize": "64"}
            client.send(rrq("random.bin", blksize=4), server.port)  # below 8: ignored
            packet, _ = await client.recv()
            assert parse(packet)[:2] == (3, 1)
    finally:
        await server.close()


async def test_error_8_after_oack_aborts_quietly(server: TftpServer, records: ClientRecords):
    """PXE ROMs ask for tsize, then abort with ERROR 8 and request again."""
    async with RawClient() as client:
        client.send(rrq("random.bin", tsize=0), server.port)
        packet, tid = await client.recv()
        assert oack_options(packet) == {"tsize": str(RANDOM_SIZE)}
        client.send(struct.pack("!HH", 5, 8) + b"tsize only\0", tid)
        assert await client.silent(0.3)
    assert server.stats["aborted"] == 1
    assert server.stats["completed"] == 0
    assert not server._transfers
    record = records.get(MAC)
    assert record is not None and record.kinds() == []  # a tsize probe is not a failure


async def test_windowed_transfer_recovers_from_a_lost_block(server: TftpServer, root: Path):
    """RFC 7440: the client ACKs the last block it got in order; the server goes back."""
    expected = (root / "two-blocks.bin").read_bytes()
    async with RawClient() as client:
        client.send(rrq("two-blocks.bin", blksize=256, windowsize=4), server.port)
        packet, tid = await client.recv()
        assert oack_options(packet) == {"blksize": "256", "windowsize": "4"}
        client.send(ack(0), tid)
        first = [parse((await client.recv())[0]) for _ in range(4)]
        assert [b for _, b, _ in first] == [1, 2, 3, 4]
        client.send(ack(2), tid)  # pretend block 3 was lost
        again = [parse((await client.recv())[0]) for _ in range(3)]
        assert [(b, len(p)) for _, b, p in again] == [(3, 256), (4, 256), (5, 0)]
        client.send(ack(5), tid)
    received = b"".join(p for _, _, p in first)
    assert received == expected
    await until(lambda: server.stats["completed"] == 1)


# -- refusals and garbage --------------------------------------------------------------------


async def test_write_request_refused(server: TftpServer, root: Path, tmp_path: Path):
    async with RawClient() as client:
        client.send(struct.pack("!H", 2) + b"upload.bin\0octet\0", server.port)
        packet, _ = await client.recv()
    assert parse(packet)[:2] == (5, 2)
    (tmp_path / "upload.bin").write_bytes(b"x" * 100)
    _, out = await run(
        "tftp", "-m", "binary", HOST, str(server.port), "-c", "put", str(tmp_path / "upload.bin"),
        "upload.bin",
    )  # fmt: skip
    assert not (root / "upload.bin").exists(), out
    assert server.stats["refused"] == 2


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("../outside/secret", 2),
        ("ipxe/../../x", 2),
        ("escape", 2),  # symlink pointing out of the root
        ("/etc/passwd", 1),  # root-relative: ROOT/etc/passwd does not exist
        ("missing.bin", 1),
        ("ipxe", 1),  # a directory
        ("fifo", 1),  # must not hang the server
    ],
)
async def test_refused_paths(server: TftpServer, records: ClientRecords, name, code):
    async with RawClient() as client:
        client.send(rrq(name), server.port)
        packet, _ = await client.recv()
        assert parse(packet)[:2] == (5, code), packet
        assert b"not for clients" not in packet and b"root:" not in packet
    assert server.stats["refused"] == 1
    record = records.get(MAC)
    assert record is not None and record.kinds() == ["tftp-refused"]


async def test_symlink_inside_root_is_served(server: TftpServer, root: Path):
    async with RawClient() as client:
        client.send(rrq("inside-link"), server.port)
        packet, tid = await client.recv()
        data = await fetch_raw(client, server.port, packet, tid)
    assert data == (root / "two-blocks.bin").read_bytes()


async def test_garbage_is_counted_and_next_request_served(server: TftpServer, root: Path):
    garbage = [
        b"\x00",
        b"\x00\x09whatever\x00octet\x00",  # unknown opcode
        b"\x00\x01two-blocks.bin",  # truncated RRQ: no terminators
        b"\x00\x01\x00octet\x00",  # no filename
        b"\x00\x03\x00\x01data to the listening port",
        b"\x00\x04\x00\x01",
    ]
    async with RawClient() as client:
        for packet in garbage:
            client.send(packet, server.port)
        assert await client.silent(0.2)
        client.send(rrq("two-blocks.bin"), server.port)
        packet, tid = await client.recv()
        data = await fetch_raw(client, server.port, packet, tid)
    assert data == (root / "two-blocks.bin").read_bytes()
    assert server.stats["malformed"] == len(garbage)
    await until(lambda: server.stats["completed"] == 1)


@pytest.mark.parametrize(
    "options",
    [b"blksize\x00", b"multicast\x00\x00", b"multicast\x00\x00blksize\x001468\x00"],
    ids=["option without value", "RFC 2090 multicast", "multicast and blksize"],
)
async def test_options_tftpy_rejected_are_ignored_and_the_file_sent(
    server: TftpServer, root: Path, options: bytes
):
    """Issue 12: tftpy's decoder rejected these RRQs and the client got silence; RFC 2347
    says ignore the option. blksize 1468 alone is acknowledged in an OACK."""
    async with RawClient() as client:
        client.send(rrq("two-blocks.bin") + options, server.port)
        packet, tid = await client.recv()
        if packet[:2] == b"\x00\x06":
            assert oack_options(packet) == {"blksize": "1468"}
            client.send(ack(0), tid)
            packet, _ = await client.recv()
            assert packet[:4] == b"\x00\x03\x00\x01" and len(packet) == 4 + 1024
        else:
            data = await fetch_raw(client, server.port, packet, tid)
            assert data == (root / "two-blocks.bin").read_bytes()


async def test_non_ascii_name_gets_an_error_not_silence(server: TftpServer):
    async with RawClient() as client:
        client.send(rrq(b"\xff\xfe-caf\xc3\xa9"), server.port)
        packet, _ = await client.recv()
    assert parse(packet)[:2] == (5, 1)  # ERROR 1, file not found


async def test_unknown_mode_refused(server: TftpServer):
    async with RawClient() as client:
        client.send(rrq("two-blocks.bin", b"mail"), server.port)
        packet, _ = await client.recv()
    assert parse(packet)[:2] == (5, 4)


# -- loss, duplicates, strangers -------------------------------------------------------------


async def test_lost_ack_causes_retransmission(root: Path):
    server = await started(root, timeout=0.3)
    try:
        async with RawClient() as client:
            client.send(rrq("two-blocks.bin"), server.port)
            first, tid = await client.recv()
            sent = time.monotonic()
            again, again_tid = await client.recv(2)  # we "lost" the first: no ACK sent
            assert time.monotonic() - sent >= 0.25
            assert (again, again_tid) == (first, tid)
            data = await fetch_raw(client, server.port, again, tid)
        assert data == (root / "two-blocks.bin").read_bytes()
        assert server.stats["retransmits"] >= 1
        await until(lambda: server.stats["completed"] == 1)
    finally:
        await server.close()


async def test_gives_up_after_retries(root: Path, records: ClientRecords):
    server = await started(root, records, timeout=0.1, retries=3)
    try:
        async with RawClient() as client:
            client.send(rrq("two-blocks.bin"), server.port)
            _, tid = await client.recv()
            client.send(ack(1), tid)  # the client answers once, then goes away
            copies = [parse((await client.recv())[0])[:2] for _ in range(3)]
            assert copies == [(3, 2)] * 3
            assert await client.silent(0.4)
        assert server.stats["timeouts"] == 1
        assert not server._transfers
        record = records.get(MAC)
        assert record is not None and record.kinds() == ["tftp-failed"]
    finally:
        await server.close()


async def test_never_acknowledged_transfer_ends_early(root: Path, records: ClientRecords):
    """A client that never ACKs the first packet (a scan, a spoofed RRQ) costs two sends,
    not `retries`; a known client's record shows the failure."""
    server = await started(root, records, timeout=0.1, retries=5)
    try:
        async with RawClient() as client:
            client.send(rrq("two-blocks.bin"), server.port)
            copies = [parse((await client.recv())[0])[:2] for _ in range(2)]
            assert copies == [(3, 1)] * 2
            assert await client.silent(0.4)
        assert server.stats["no_first_ack"] == 1 and not server._transfers
        record = records.get(MAC)
        assert record is not None and record.kinds() == ["tftp-failed"]
    finally:
        await server.close()


async def test_icmp_port_unreachable_ends_the_transfer(root: Path):
    """The client closes its port mid-transfer: the kernel's ICMP port unreachable, answered
    to the first retransmission, ends it (before, it took all the retries' timeouts)."""
    server = await started(root, timeout=0.3, retries=50)
    try:
        async with RawClient() as client:
            client.send(rrq("two-blocks.bin"), server.port)
            _, tid = await client.recv()
            client.send(ack(1), tid)
            await client.recv()  # DATA 2; the client now closes its socket
        await until(lambda: server.stats["unreachable"] == 1, limit=5)
        assert not server._transfers and server.stats["timeouts"] == 0
    finally:
        await server.close()


async def test_duplicate_ack_is_not_answered(server: TftpServer, root: Path):
    """Sorcerer's apprentice: a repeated ACK must not trigger a second copy of the block."""
    async with RawClient() as client:
        client.send(rrq("two-blocks.bin"), server.port)
        packet, tid = await client.recv()
        client.send(ack(1), tid)
        client.send(ack(1), tid)
        packet, _ = await client.recv()
        assert parse(packet)[:2] == (3, 2)
        assert await client.silent(0.5)  # server timeout is 2 s: no resend in between
        client.send(ack(2), tid)
        packet, _ = await client.recv()
        assert parse(packet) == (3, 3, b"")
        client.send(ack(3), tid)
    await until(lambda: server.stats["completed"] == 1)
    assert server.stats["duplicate_acks"] == 1
    assert server.stats["retransmits"] == 0


async def test_repeated_request_is_not_a_second_transfer(server: TftpServer, root: Path):
    async with RawClient() as client:
        client.send(rrq("two-blocks.bin", blksize=512), server.port)
        oack, tid = await client.recv()
        assert oack_options(oack) == {"blksize": "512"}
        client.send(rrq("two-blocks.bin", blksize=512), server.port)  # impatient ROM
        assert await client.silent(0.3)
        client.send(ack(0), tid)
        first, _ = await client.recv()
        data = await fetch_raw(client, server.port, first, tid)
    assert data == (root / "two-blocks.bin").read_bytes()
    assert server.stats["duplicate_requests"] == 1
    assert server.stats["transfers"] == 1
    await until(lambda: server.stats["completed"] == 1)


async def test_new_request_from_same_port_replaces_the_old_one(server: TftpServer, root: Path):
    """A ROM that restarts from the same port must get the new file, not the old one."""
    async with RawClient() as client:
        client.send(rrq("random.bin"), server.port)
        _, old_tid = await client.recv()
        client.send(ack(1), old_tid)
        await client.recv()  # DATA 2 of the old transfer
        client.send(rrq("two-blocks.bin"), server.port)
        first, tid = await client.recv()
        assert tid != old_tid
        data = await fetch_raw(client, server.port, first, tid)
        assert await client.silent(0.2)  # the old transfer is gone, no retransmissions
    assert data == (root / "two-blocks.bin").read_bytes()
    assert server.stats["transfers"] == 2
    await until(lambda: server.stats["completed"] == 1)


async def test_wrong_tid_gets_error_5_and_transfer_continues(server: TftpServer, root: Path):
    async with RawClient() as client, RawClient() as stranger:
        client.send(rrq("two-blocks.bin"), server.port)
        first, tid = await client.recv()
        stranger.send(ack(1), tid)
        error, from_port = await stranger.recv()
        assert parse(error)[:2] == (5, 5)
        assert from_port == tid
        assert await client.silent(0.2)  # the stranger's ACK did not advance our transfer
        data = await fetch_raw(client, server.port, first, tid)
    assert data == (root / "two-blocks.bin").read_bytes()
    assert server.stats["wrong_tid"] == 1
    await until(lambda: server.stats["completed"] == 1)


async def test_close_releases_transfers_and_files(root: Path):
    fds_before = len(os.listdir("/proc/self/fd"))
    server = await started(root)
    for _ in range(3):
        async with RawClient() as client:
            client.send(rrq("random.bin"), server.port)
            await client.recv()
    assert len(server._transfers) == 3
    await server.close()
    assert not server._transfers
    await asyncio.sleep(0.1)
    assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_full_server_stays_silent_until_a_slot_frees(root: Path):
    """Like dnsmasq's tftp-max: a request over the limit gets no answer (no ERROR that would
    abort a boot), and the client's retransmitted RRQ is served once a transfer ends."""
    server = await started(root, max_transfers=1)
    try:
        async with RawClient() as first, RawClient() as second:
            first.send(rrq("two-blocks.bin"), server.port)
            _, tid = await first.recv()
            first.send(ack(1), tid)  # acknowledged: a live transfer, not an abandoned one
            block2, _ = await first.recv()
            second.send(rrq("two-blocks.bin"), server.port)
            assert await second.silent(0.5)
            assert server.stats["busy"] == 1
            await fetch_raw(first, server.port, block2, tid)
            await until(lambda: not server._transfers)
            second.send(rrq("two-blocks.bin"), server.port)  # the ROM's retransmission
            again, tid2 = await second.recv()
            data = await fetch_raw(second, server.port, again, tid2)
        assert data == (root / "two-blocks.bin").read_bytes()
    finally:
        await server.close()


async def abandon_rrqs(sockets: list, port: int) -> None:
    """Send an RRQ from every socket and never read or ACK (the sockets stay open, so no
    ICMP tells the server either)."""
    loop = asyncio.get_running_loop()
    for i, sock in enumerate(sockets):
        await loop.sock_sendto(sock, rrq("ipxe/undionly.kpxe", blksize=1468), ("127.0.0.1", port))
        if i % 20 == 19:
            await asyncio.sleep(0.02)  # within the listener's receive buffer


def loopback_sockets(count: int, per_address: int) -> list:
    """UDP sockets on 127.0.1.x (all of 127/8 is local): `per_address` on each address."""
    import socket

    sockets = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((f"127.0.1.{i // per_address + 1}", 0))
        sockets.append(sock)
    return sockets


async def test_abandoned_requests_never_lock_out_a_real_client(root: Path, tmp_path: Path):
    """Issue 12: 100 RRQs never acknowledged filled tftp_max_transfers and every other
    client was refused for 8-10 s. Now 300 abandoned RRQs from 150 addresses pend against a
    cap of 100, and tftp-hpa still fetches at once (the oldest unacknowledged one makes
    room), with every transfer still pending when it does."""
    server = await started(root, max_transfers=100, timeout=30.0)
    sockets = loopback_sockets(300, per_address=2)
    try:
        await abandon_rrqs(sockets, server.port)
        await until(lambda: len(server._transfers) == 100, limit=10)
        await tftp_hpa_get(server.port, "ipxe/undionly.kpxe", tmp_path / "got")
        assert same(tmp_path / "got", root / "ipxe" / "undionly.kpxe")
        # RRQs past the cap evicted the oldest unacknowledged transfer (or, while all slots
        # were still opening their files, were dropped for the ROM to retransmit)
        assert server.stats["evicted_unacknowledged"] >= 100
        assert server.stats["completed"] == 1
    finally:
        for sock in sockets:
            sock.close()
        await server.close()


async def test_one_address_gets_at_most_max_per_client_transfers(root: Path, tmp_path: Path):
    """Per-client limit: a ninth RRQ from one address is dropped silently (counted); other
    addresses are served."""
    server = await started(root, max_per_client=8, timeout=30.0)
    sockets = loopback_sockets(9, per_address=9)
    try:
        await abandon_rrqs(sockets, server.port)
        await until(lambda: server.stats["busy_client"] == 1, limit=10)
        assert len(server._transfers) + len(server._starting) == 8
        await tftp_hpa_get(server.port, "ipxe/undionly.kpxe", tmp_path / "got")
        assert same(tmp_path / "got", root / "ipxe" / "undionly.kpxe")
    finally:
        for sock in sockets:
            sock.close()


async def test_virtual_files_are_served_and_others_come_from_the_root(root: Path, tmp_path: Path):
    """The boot layer's hook: generated content for the names it knows, the root otherwise."""
    generated = b"menu for one client\n" * 100  # several blocks

    def virtual(name: str) -> bytes | None:
        return generated if name.lstrip("/") == "grub/clients/x.cfg" else None

    server = await started(root, virtual=virtual)
    try:
        await tftp_hpa_get(server.port, "/grub/clients/x.cfg", tmp_path / "cfg")
        assert (tmp_path / "cfg").read_bytes() == generated
        await busybox_get(server.port, "ipxe/undionly.kpxe", tmp_path / "ipxe", 1468)
        assert same(tmp_path / "ipxe", IPXE_BINARY)
        out = await tftp_hpa_get(server.port, "grub/clients/y.cfg", tmp_path / "missing")
        assert b"not found" in out.lower() or b"error" in out.lower(), out
        assert server.stats["virtual"] == 1
    finally:
        await server.close()


async def test_ended_transfers_are_freed_without_the_cycle_collector(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A finished transfer and its read-ahead are freed when it ends, not at the next full
    garbage collection: with a large heap that can be thousands of transfers later (a boot
    storm measured ~170 KB held per ended transfer, server RSS climbing with every wave)."""
    created: list[weakref.ref] = []

    class Tracked(tftp_server.Transfer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            created.append(weakref.ref(self))

    monkeypatch.setattr(tftp_server, "Transfer", Tracked)
    gc.collect()
    gc.disable()
    try:
        server = await started(root)
        try:
            jobs = [tftp_hpa_get(server.port, "ipxe/undionly.kpxe", tmp_path / f"i{i}")
                    for i in range(3)]  # fmt: skip
            jobs.append(busybox_get(server.port, "random.bin", tmp_path / "r", 1468))
            await asyncio.gather(*jobs)
            await until(lambda: server.stats["completed"] == 4)
            await asyncio.sleep(0.1)  # the closed sockets' connection_lost callbacks
            assert len(created) == 4
            assert [ref for ref in created if ref() is not None] == []
        finally:
            await server.close()
    finally:
        gc.enable()
