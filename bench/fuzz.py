"""Fuzz a live `netboot serve`: mutated DHCP, TFTP and HTTP traffic with valid probes between.

    sudo .venv/bin/python bench/fuzz.py [--cases 100000] [--probe-every 100] [--seed 1]
        [--protocols proxy,full,tftp,http] [--new-macs 0] [--big-clients 0] [--abandoned 0]
        [--json]

The real server runs in a server network namespace (proxy mode for proxy DHCP, TFTP and
HTTP; then full mode for full DHCP), the cases come from a client namespace over a veth
pair. Each protocol gets `--cases` mutated packets or requests (random bytes, truncations,
bit flips, edge values in fields and options, long strings, path tricks, abandoned TFTP
transfers, idle HTTP connections); every `--probe-every` cases a valid request must be
answered. Per protocol it prints: cases, probes answered/total, tracebacks in the server
log, HTTP 5xx answers, and the server's fds and RSS before and after (from /proc/PID),
after waiting (bounded) for idle connections and abandoned transfers to time out.
`--new-macs N` then sends N DISCOVERs from N new MACs, `--big-clients N` N clients with
10 KB strings (records' memory), and `--abandoned N` N TFTP reads from N/4 extra client
addresses left unacknowledged, with a valid read while they pend. Every loop is bounded in
count and time; all traffic stays on the veth link. Exit code 1 when a finding shows
(traceback, 5xx, lost probe, fds not back).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the shared test bed: testbed/

from testbed.netns import Namespace, new_tag, veth  # noqa: E402
from testbed.serve import ServeProcess  # noqa: E402

SERVER_IP = "10.236.0.1"
CLIENT_IP = "10.236.0.50"
PROBE_IP = "10.236.0.51"  # TFTP probes: not the fuzzed address, which hits the per-client cap
PROBE_FILE = "probe.txt"
PROBE_BODY = b"netboot fuzz probe\n"
IDLE_TIMEOUT = 2  # the server's --http-idle-timeout here, so idle connections end quickly
SETTLE_SECONDS = 40  # longest wait for fds to come back (abandoned TFTP: 2 s x 6 tries)
FD_SLACK = 3
BIG = 10 * 1024
PROXY_ALSO = {("proxy", "tftp"), ("proxy", "http")}


@dataclass
class Figures:
    protocol: str
    cases: int = 0
    probes: int = 0
    answered: int = 0
    tracebacks: int = 0
    http_5xx: int = 0
    fds_before: int = 0
    fds_after: int = 0
    rss_kb_before: int = 0
    rss_kb_after: int = 0
    seconds: float = 0.0
    pending_transfers: int = 0  # "abandoned TFTP": transfers under way when the probe asked

    def clean(self) -> bool:
        return (
            self.tracebacks == 0
            and self.http_5xx == 0
            and self.answered == self.probes
            and self.fds_after <= self.fds_before + FD_SLACK
        )


# --- the server -------------------------------------------------------------------------------


def proc_figures(pid: int) -> tuple[int, int]:
    """(open fds, RSS in kB) of a process."""
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fds, rss


def make_root(root: Path) -> None:
    (root / "ipxe").mkdir(parents=True)
    (root / "ipxe" / "undionly.kpxe").write_bytes(b"fake iPXE binary")
    (root / PROBE_FILE).write_bytes(PROBE_BODY)
    version = root / "images" / "fuzz" / "versions" / "20260101-000000"
    version.mkdir(parents=True)
    (version / "vmlinuz").write_bytes(b"kernel" * 1000)
    (version / "initrd.img").write_bytes(b"initrd")
    (version / "root.squashfs").write_bytes(b"\0" * 100_000)
    (root / "images" / "fuzz" / "current").symlink_to("versions/20260101-000000")


def serve(ns: Namespace, tmp: Path, mode: str) -> ServeProcess:
    config = tmp / f"{mode}.toml"
    config.write_text(
        "[dhcp]\nrange_start = '10.236.1.1'\nrange_end = '10.236.200.254'\n"
        f"netmask = '255.255.0.0'\nlease_file = '{tmp / 'leases.json'}'\n"
        "probe = false\nforce = true\n"
    )
    process = ServeProcess(
        ns,
        tmp / "root",
        interface="vsrv",
        address=SERVER_IP,
        log_path=tmp / f"serve-{mode}.log",
        dhcp=mode,
        config=config,
        extra=("--http-idle-timeout", str(IDLE_TIMEOUT)),
    )
    return process.start(timeout=30)


# --- mutations --------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes, strings: list[bytes]) -> bytes:
    """One mutation of a valid message."""
    kind = rng.randrange(7)
    buf = bytearray(data)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 1500))
    if kind == 1:
        return bytes(buf[: rng.randrange(0, len(buf) + 1)])
    if kind == 2:
        for _ in range(rng.randrange(1, 9)):
            bit = rng.randrange(len(buf) * 8)
            buf[bit // 8] ^= 1 << (bit % 8)
        return bytes(buf)
    if kind == 3:
        at = rng.randrange(len(buf))
        edge = rng.choice([b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\0" * 4])
        buf[at : at + len(edge)] = edge
        return bytes(buf)
    if kind == 4:  # a long or hostile string spliced in
        at = rng.randrange(len(buf) + 1)
        return bytes(buf[:at]) + rng.choice(strings) + bytes(buf[at:])
    if kind == 5:  # duplicated tail
        at = rng.randrange(len(buf))
        return bytes(buf) + bytes(buf[at:]) * rng.randrange(1, 4)
    return bytes(buf) + rng.randbytes(rng.randrange(1, 64))


HOSTILE_STRINGS = [
    b"A" * 300,
    b"B" * BIG,
    b"../../../../etc/passwd",
    b"..\\..\\..\\windows",
    b"%2e%2e/%2e%2e/etc/passwd",
    b"a\x00b",
    b"line\nforged log line\r\n",
    b"\x1b[31mred\x1b[0m",
    "\u00e9\u202e\U0001f600".encode(),
    b"%s%n%x",
    b"/" * 3000,
]


# --- DHCP -------------------------------------------------------------------------------------


def dhcp_packet(mac: bytes, xid: int, msg_type: int = 1, extra: bytes = b"") -> bytes:
    """A BOOTP/DHCP request with PXE options (RFC 2131/4578 layout, built by hand)."""
    head = struct.pack("!BBBBIHH4s4s4s4s", 1, 1, 6, 0, xid, 0, 0x8000, *([b"\0" * 4] * 4))
    head += mac + b"\0" * 10 + b"\0" * 192 + b"\x63\x82\x53\x63"
    vendor = b"PXEClient:Arch:00007:UNDI:003016"
    options = bytes([53, 1, msg_type, 60, len(vendor)]) + vendor
    options += bytes([93, 2, 0, 7, 97, 17, 0]) + bytes(range(1, 17)) + extra + b"\xff"
    return head + options


def udp_socket(ns: Namespace, port: int, timeout: float, address: str = "0.0.0.0") -> socket.socket:
    with ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"vcli")
    sock.bind((address, port))
    sock.settimeout(timeout)
    return sock


def await_reply(sock: socket.socket, match: Callable[[bytes], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except (TimeoutError, ConnectionRefusedError):
            continue
        if match(data):
            return True
    return False


def drain(sock: socket.socket) -> list[tuple[bytes, tuple[str, int]]]:
    got = []
    sock.setblocking(False)
    try:
        for _ in range(256):
            got.append(sock.recvfrom(65536))
    except (BlockingIOError, ConnectionRefusedError):
        pass
    finally:
        sock.setblocking(True)
    return got


def dhcp_extra_options(rng: random.Random) -> bytes:
    """Options with edge lengths: long hostname, user class, client id, overloading."""
    code = rng.choice([12, 43, 50, 52, 55, 57, 60, 61, 77, 81, 93, 94, 97, 175, 255, 0])
    length = rng.choice([0, 1, 2, 4, 16, 255])
    return bytes([code, length]) + rng.randbytes(length)


def fuzz_dhcp(
    ns: Namespace, rng: random.Random, cases: int, probe_every: int, unicast_port: int | None
) -> tuple[int, int]:
    """Mutated DHCP to 67 (broadcast) and, for proxy, 4011; returns (probes, answered)."""
    sock = udp_socket(ns, 68, 1.0)
    probes = answered = 0
    try:
        for i in range(cases):
            mac = bytes([0x52, 0x54, 0]) + rng.randbytes(3)
            msg_type = rng.choice([1, 3, 4, 7, 8, rng.randrange(256)])
            valid = dhcp_packet(mac, rng.getrandbits(32), msg_type, dhcp_extra_options(rng))
            data = mutate(rng, valid, HOSTILE_STRINGS)
            target = ("255.255.255.255", 67)
            if unicast_port and rng.random() < 0.3:
                target = (SERVER_IP, unicast_port)
            sock.sendto(data, target)
            if i % 64 == 0:
                drain(sock)
            if (i + 1) % probe_every == 0:
                probes += 1
                answered += dhcp_probe(sock, rng)
    finally:
        sock.close()
    return probes, answered


def dhcp_probe(sock: socket.socket, rng: random.Random, tries: int = 5) -> bool:
    """A valid DISCOVER from a known MAC must get an OFFER (five tries: UDP, and the
    replies to the fuzz cases can fill this socket's buffer)."""
    xid = rng.getrandbits(32)
    packet = dhcp_packet(bytes.fromhex("525400f0f001"), xid)
    for _ in range(tries):
        sock.sendto(packet, ("255.255.255.255", 67))
        if await_reply(sock, lambda d: d[:1] == b"\x02" and d[4:8] == packet[4:8], 2.0):
            return True
    return False


def new_macs(ns: Namespace, rng: random.Random, count: int, burst: int = 16) -> int:
    """DISCOVERs from `count` new MACs, `burst` at a time, each burst waiting (at most a
    second) for its OFFERs so the server's socket buffer is not simply overrun; returns
    how many OFFERs came back."""
    sock = udp_socket(ns, 68, 1.0)
    offers = 0
    try:
        for start in range(0, count, burst):
            for i in range(start, min(start + burst, count)):
                mac = bytes([0x02, 0xF0]) + i.to_bytes(4, "big")
                sock.sendto(dhcp_packet(mac, 0x0F000000 + i), ("255.255.255.255", 67))
            deadline = time.monotonic() + 1.0
            got = 0
            while got < min(burst, count - start) and time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    break
                got += data[:1] == b"\x02" and data[4:5] == b"\x0f"
            offers += got
    finally:
        sock.close()
    return offers


# --- TFTP -------------------------------------------------------------------------------------


def rrq(name: bytes, mode: bytes = b"octet", options: bytes = b"") -> bytes:
    return b"\x00\x01" + name + b"\0" + mode + b"\0" + options


def tftp_case(rng: random.Random) -> tuple[bytes, bool]:
    """(packet, abandon): a mutated TFTP request; abandon=True leaves a transfer hanging."""
    if rng.random() < 0.002:
        return rrq(b"ipxe/undionly.kpxe"), True
    name = rng.choice([b"ipxe/undionly.kpxe", PROBE_FILE.encode(), b"nope", *HOSTILE_STRINGS])
    mode = rng.choice([b"octet", b"netascii", b"mail", b"OcTeT", b"", b"x" * 300])
    options = b""
    for _ in range(rng.randrange(0, 4)):
        option = rng.choice([b"blksize", b"tsize", b"timeout", b"windowsize", b"x" * 100])
        value = rng.choice([b"0", b"1", b"8", b"65464", b"65536", b"-1", b"99999999999", b"z"])
        options += option + b"\0" + value + b"\0"
    packet = rrq(name, mode, options)
    if rng.random() < 0.2:
        opcode = rng.choice([2, 3, 4, 5, 6, 0, 255])
        packet = struct.pack("!H", opcode) + packet[2:]
    return mutate(rng, packet, HOSTILE_STRINGS) if rng.random() < 0.6 else packet, False


def cancel_transfers(sock: socket.socket) -> None:
    """Answer whatever the server sent with an ERROR, so mutated-but-valid requests do not
    all sit as transfers until they time out (the deliberate abandoned ones do)."""
    for data, peer in drain(sock):
        if data[:2] in (b"\x00\x03", b"\x00\x06"):
            sock.sendto(b"\x00\x05\x00\x00cancel\0", peer)


def tftp_probe(ns: Namespace, tries: int = 3, timeout: float = 5.0) -> bool:
    """A valid read of the probe file, each try from a fresh port (a late answer to an
    earlier try, or an error, does not end the probe); True if one got the file."""
    for _ in range(tries):
        if tftp_read_once(ns, timeout):
            return True
    return False


def tftp_read_once(ns: Namespace, timeout: float) -> bool:
    sock = udp_socket(ns, 0, timeout, PROBE_IP)
    try:
        sock.sendto(rrq(PROBE_FILE.encode()), (SERVER_IP, 69))
        data, peer = sock.recvfrom(1024)
        if data[:4] == b"\x00\x03\x00\x01" and data[4:] == PROBE_BODY:
            sock.sendto(b"\x00\x04\x00\x01", peer)
            return True
        print(f"fuzz: a TFTP probe was answered {data[:60]!r}", file=sys.stderr)
        return False
    except (TimeoutError, ConnectionRefusedError):
        return False
    finally:
        sock.close()


def fuzz_tftp(ns: Namespace, rng: random.Random, cases: int, probe_every: int) -> tuple[int, int]:
    socks = [udp_socket(ns, 0, 1.0) for _ in range(8)]
    abandoned = [udp_socket(ns, 0, 1.0) for _ in range(4)]
    probes = answered = 0
    try:
        for i in range(cases):
            packet, abandon = tftp_case(rng)
            if abandon:
                rng.choice(abandoned).sendto(packet, (SERVER_IP, 69))
            else:
                sock = socks[i % len(socks)]
                cancel_transfers(sock)
                port = 69 if rng.random() < 0.9 else rng.randrange(1024, 65536)
                sock.sendto(packet, (SERVER_IP, port))
            if (i + 1) % probe_every == 0:
                probes += 1
                answered += tftp_probe(ns)
        time.sleep(0.2)
        for sock in socks:
            cancel_transfers(sock)
    finally:
        for sock in socks + abandoned:
            sock.close()
    return probes, answered


def abandoned_pileup(ns: Namespace, count: int, per_address: int = 4) -> tuple[int, bool]:
    """`count` RRQs from `count / per_address` extra client addresses (the per-client cap is
    8), never acknowledged (the sockets stay open, so no ICMP ends them), then a valid read
    while they pend. Returns (transfers the server had under way just before the probe,
    whether the probe got its file)."""
    addresses = [f"10.236.{3 + i // 250}.{i % 250 + 1}" for i in range(-(-count // per_address))]
    for address in addresses:
        ns.ip("addr", "add", f"{address}/16", "dev", "vcli")
    sockets: list[socket.socket] = []
    try:
        with ns.entered():
            for i in range(count):
                sockets.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                sockets[-1].bind((addresses[i // per_address], 0))
        request = rrq(b"ipxe/undionly.kpxe", options=b"blksize\x001468\x00")
        for i, sock in enumerate(sockets):
            sock.sendto(request, (SERVER_IP, 69))
            if i % 20 == 19:
                time.sleep(0.02)  # within the listener's receive buffer
        time.sleep(1.0)  # the server opens the files off its event loop
        pending = transfers_under_way(ns)
        return pending, tftp_probe(ns)
    finally:
        for sock in sockets:
            sock.close()
        for address in addresses:
            ns.ip("addr", "del", f"{address}/16", "dev", "vcli", check=False)


def transfers_under_way(ns: Namespace) -> int:
    """How many TFTP transfers the server lists in /api/status (-1 if it did not answer)."""
    try:
        with (
            ns.entered(),
            urllib.request.urlopen(f"http://{SERVER_IP}/api/status", timeout=10) as r,
        ):
            return len(json.load(r).get("transfers", []))
    except (OSError, ValueError):
        return -1


# --- HTTP -------------------------------------------------------------------------------------

HTTP_PATHS = [
    "/boot.ipxe",
    "/boot.ipxe?mac=52-54-00-aa-bb-cc&platform=efi&buildarch=x86_64",
    f"/{PROBE_FILE}",
    "/images/fuzz/versions/20260101-000000/vmlinuz",
    "/api/clients",
    "/api/stats",
    "/clients/52:54:00:aa:bb:cc",
    "/api/clients/zz",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/images/" + "a" * 300,
    "/" + "d/" * 2000,
    "/a%00b",
    "/\\..\\..\\etc\\passwd",
    "/boot.ipxe?mac=52-54-00-aa-bb-cc&platform=efi%0Aforged%20line",
    "/ipxe/../../../etc/shadow",
]
HTTP_HEADERS = [
    b"Range: bytes=0-0",
    b"Range: bytes=99999999999-",
    b"Range: bytes=-0",
    b"Range: garbage",
    b"If-None-Match: " + b"x" * 5000,
    b"If-Modified-Since: not a date",
    b"Accept-Encoding: gzip, br",
    b"Transfer-Encoding: chunked",
    b"Content-Length: 5",
    b"Connection: keep-alive",
    b"Host: " + b"h" * 9000,
]


def http_case(rng: random.Random) -> bytes:
    method = rng.choice([b"GET", b"HEAD", b"GET", b"POST", b"PUT", b"BREW", b"G\x00T"])
    path = rng.choice(HTTP_PATHS).encode()
    headers = b"".join(rng.choice(HTTP_HEADERS) + b"\r\n" for _ in range(rng.randrange(3)))
    request = method + b" " + path + b" HTTP/1.1\r\nHost: fuzz\r\n" + headers + b"\r\n"
    return mutate(rng, request, HOSTILE_STRINGS) if rng.random() < 0.6 else request


def http_exchange(ns: Namespace, data: bytes, timeout: float = 3.0) -> int | None:
    """Send one request on a new connection; the status code, None if there was none (an
    incomplete request waits for the server's idle timeout: `timeout` cuts that short)."""
    with ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((SERVER_IP, 80))
        sock.sendall(data)
        head = sock.recv(64)
    except OSError:
        return None
    finally:
        sock.close()
    parts = head.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def fuzz_http(
    ns: Namespace, rng: random.Random, cases: int, probe_every: int
) -> tuple[int, int, int]:
    """Returns (probes, answered, 5xx answers). Cases run 32 at a time (an incomplete
    request gets no answer for a second); probes one at a time between batches."""
    probes = answered = errors = 0
    idle: list[socket.socket] = []
    probe = f"GET /{PROBE_FILE} HTTP/1.1\r\nHost: probe\r\n\r\n".encode()
    try:
        with ThreadPoolExecutor(32) as pool:
            for start in range(0, cases, probe_every):
                batch = [http_case(rng) for _ in range(min(probe_every, cases - start))]
                if rng.random() < 0.5 and len(idle) < 20:
                    idle.append(idle_connection(ns, rng))
                statuses = pool.map(lambda data: http_exchange(ns, data, 1.0), batch)
                errors += sum(1 for status in statuses if status is not None and status >= 500)
                if start + probe_every <= cases:
                    probes += 1
                    answered += any(http_exchange(ns, probe) == 200 for _ in range(3))
    finally:
        for sock in idle:
            sock.close()
    return probes, answered, errors


def idle_connection(ns: Namespace, rng: random.Random) -> socket.socket:
    """A connection that sends nothing or half a request head and is left open."""
    with ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(3)
    try:
        sock.connect((SERVER_IP, 80))
        sock.sendall(rng.choice([b"", b"GET / HTTP/1.1\r\n"]))
    except OSError:
        pass
    return sock


def big_clients(ns: Namespace, rng: random.Random, count: int) -> int:
    """Clients whose every string is 10 KB (query values and DHCP options)."""
    errors = 0
    sock = udp_socket(ns, 68, 1.0)
    try:
        for i in range(count):
            mac = bytes([0x02, 0xB1]) + i.to_bytes(4, "big")
            hyphens = "-".join(f"{b:02x}" for b in mac)
            value = "x" * BIG
            query = f"mac={hyphens}&platform={value}&buildarch={value}&serial={value}"
            request = f"GET /boot.ipxe?{query} HTTP/1.1\r\nHost: big\r\n\r\n".encode()
            status = http_exchange(ns, request)
            errors += status is not None and status >= 500
            hostname = bytes([12, 255]) + b"h" * 255
            sock.sendto(
                dhcp_packet(mac, rng.getrandbits(32), 1, hostname * 4), ("255.255.255.255", 67)
            )
            if i % 64 == 0:
                drain(sock)
    finally:
        sock.close()
    return errors


# --- the campaign -----------------------------------------------------------------------------


def settle(pid: int, start_fds: int) -> None:
    """Wait (bounded) until idle connections and abandoned transfers are gone: back to the
    starting count, so the figures show a lingering socket (clean() allows FD_SLACK)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and proc_figures(pid)[0] > start_fds:
        time.sleep(0.5)


def measured(process: ServeProcess, name: str, run: Callable[[Figures], None]) -> Figures:
    assert process.proc is not None
    pid = process.proc.pid
    figures = Figures(name)
    log_start = len(process.log())
    figures.fds_before, figures.rss_kb_before = proc_figures(pid)
    started = time.monotonic()
    run(figures)
    figures.seconds = round(time.monotonic() - started, 1)
    settle(pid, figures.fds_before)
    figures.fds_after, figures.rss_kb_after = proc_figures(pid)
    figures.tracebacks = process.log()[log_start:].count("Traceback")
    print(f"fuzz: {json.dumps(asdict(figures))}", file=sys.stderr, flush=True)
    return figures


def run_mode(
    mode: str, protocols: list[str], args: argparse.Namespace, nets: tuple, tmp: Path
) -> list[Figures]:
    server_ns, client_ns = nets
    rng = random.Random(f"{args.seed}-{mode}")
    process = serve(server_ns, tmp, mode)
    results = []
    cases, every = args.cases, args.probe_every

    def dhcp(figures: Figures) -> None:
        figures.cases = cases
        unicast = 4011 if mode == "proxy" else None
        figures.probes, figures.answered = fuzz_dhcp(client_ns, rng, cases, every, unicast)

    def tftp(figures: Figures) -> None:
        figures.cases = cases
        figures.probes, figures.answered = fuzz_tftp(client_ns, rng, cases, every)

    def http(figures: Figures) -> None:
        figures.cases = cases
        figures.probes, figures.answered, figures.http_5xx = fuzz_http(client_ns, rng, cases, every)

    def macs(figures: Figures) -> None:
        figures.cases = args.new_macs
        offers = new_macs(client_ns, rng, args.new_macs)
        print(f"fuzz: {offers} OFFERs to {args.new_macs} new MACs", file=sys.stderr)
        figures.probes, figures.answered = 1, int(tftp_probe(client_ns))

    def pileup(figures: Figures) -> None:
        figures.cases = args.abandoned
        figures.pending_transfers, answered = abandoned_pileup(client_ns, args.abandoned)
        figures.probes, figures.answered = 1, int(answered)

    def big(figures: Figures) -> None:
        figures.cases = args.big_clients
        figures.http_5xx = big_clients(client_ns, rng, args.big_clients)
        figures.probes, figures.answered = 1, int(tftp_probe(client_ns))

    try:
        for name, run in (("proxy", dhcp), ("full", dhcp), ("tftp", tftp), ("http", http)):
            # TFTP and HTTP do not depend on the DHCP mode: fuzzed once, with proxy DHCP
            if name in protocols and (name == mode or (mode, name) in PROXY_ALSO):
                results.append(measured(process, f"{name} dhcp" if run is dhcp else name, run))
        if mode == "proxy" and args.new_macs:
            results.append(measured(process, "new MACs", macs))
        if mode == "proxy" and args.abandoned:
            results.append(measured(process, "abandoned TFTP", pileup))
        if mode == "proxy" and args.big_clients:
            results.append(measured(process, "10 KB clients", big))
    finally:
        if process.stop() != 0:
            print(f"netboot serve ({mode}) did not stop cleanly:\n{process.tail()}")
    return results


def print_table(results: list[Figures]) -> None:
    print(
        f"{'protocol':<14}{'cases':>8}{'probes':>12}{'tracebacks':>12}{'5xx':>6}"
        f"{'fds':>11}{'RSS kB':>18}{'s':>7}"
    )
    for r in results:
        print(
            f"{r.protocol:<14}{r.cases:>8}{f'{r.answered}/{r.probes}':>12}{r.tracebacks:>12}"
            f"{r.http_5xx:>6}{f'{r.fds_before}->{r.fds_after}':>11}"
            f"{f'{r.rss_kb_before}->{r.rss_kb_after}':>18}{r.seconds:>7}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per protocol")
    parser.add_argument("--probe-every", type=int, default=100)
    parser.add_argument("--seed", default="1")
    parser.add_argument("--protocols", default="proxy,full,tftp,http")
    parser.add_argument("--new-macs", type=int, default=0)
    parser.add_argument("--big-clients", type=int, default=0)
    parser.add_argument(
        "--abandoned", type=int, default=0, help="unacknowledged TFTP reads pending at a probe"
    )
    parser.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    args = parser.parse_args()
    protocols = args.protocols.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="netboot-fuzz-"))
    tag = new_tag()
    server_ns, client_ns = Namespace("srv", tag), Namespace("cli", tag)
    results: list[Figures] = []
    try:
        veth(server_ns, "vsrv", client_ns, "vcli")
        server_ns.up("vsrv", f"{SERVER_IP}/16")
        client_ns.up("vcli", f"{CLIENT_IP}/16")
        client_ns.ip("addr", "add", f"{PROBE_IP}/16", "dev", "vcli")
        make_root(tmp / "root")
        nets = (server_ns, client_ns)
        if set(protocols) - {"full"} or args.new_macs or args.big_clients or args.abandoned:
            results += run_mode("proxy", protocols, args, nets, tmp)
        if "full" in protocols:
            results += run_mode("full", protocols, args, nets, tmp)
    finally:
        client_ns.close()
        server_ns.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    else:
        print_table(results)
    return 0 if all(r.clean() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
