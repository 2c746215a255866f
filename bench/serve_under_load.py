"""Do large HTTP downloads starve proxyDHCP and TFTP? `netboot serve` measured from outside.

    sudo .venv/bin/python bench/serve_under_load.py [--size-mb 1024] [--parallel 16]
        [--duration 20] [--discovers 200] [--interval-ms 20] [--tftp-fetches 10]

HTTP runs on its own thread and event loop (sharing the GIL with the main loop that
answers DHCP and TFTP); `--layouts thread,loop [--rounds N]` also measures it on the main
loop, alternately in the same run. This runs the real `netboot serve` (proxy mode) in a
server network namespace, with a big file published under ROOT/images/, and measures from
a client namespace joined by a veth pair:

  idle       - proxyDHCP DISCOVER -> OFFER round trip (--discovers, --interval-ms apart),
               TFTP fetches of ipxe/undionly.kpxe (a small Python TFTP client, blksize
               --tftp-blksize), one HTTP download of the big file;
  under load - the same DHCP and TFTP probes while --parallel curl processes download the
               big file over and over for --duration seconds; aggregate HTTP throughput from
               the client interface's byte counter, and the server process's CPU (main
               thread = DHCP/TFTP loop, other threads = HTTP loop and its executor).

Needs root (namespaces, ports 67/69/80). Everything it creates (two namespaces, a veth pair,
a temp dir) is removed at the end, on errors and on Ctrl-C/SIGTERM. All traffic stays on
the veth link between the two namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the shared test bed: testbed/

from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402

from testbed.netns import Namespace, new_tag, veth  # noqa: E402
from testbed.serve import ServeProcess  # noqa: E402

SERVER_IP = "10.233.0.1"
CLIENT_IP = "10.233.0.50"
BIG_FILE = "images/big.bin"
TFTP_FILE = "ipxe/undionly.kpxe"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- probes (run in the client namespace) ---------------------------------------------------


def pxe_discover(mac: str = "52:54:00:be:ec:01") -> bytes:
    """A UEFI x64 PXE DISCOVER; the xid (bytes 4-8) is patched per probe."""
    chaddr = bytes.fromhex(mac.replace(":", "")) + b"\0" * 10
    options = [
        ("message-type", "discover"),
        ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003016"),
        ("pxe_client_architecture", b"\x00\x07"),
        ("pxe_client_machine_identifier", b"\x00" + bytes(range(1, 17))),
        "end",
    ]
    return bytes(BOOTP(op=1, chaddr=chaddr, xid=0, flags=0x8000) / DHCP(options=options))


def client_udp(ns: Namespace, port: int, timeout: float) -> socket.socket:
    with ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    if port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"vcli")
    sock.bind(("0.0.0.0", port))
    sock.settimeout(timeout)
    return sock


@dataclass
class DhcpResult:
    rtts: list[float] = field(default_factory=list)  # seconds
    lost: int = 0


def dhcp_probe(ns: Namespace, count: int, interval: float, timeout: float = 1.0) -> DhcpResult:
    """`count` DISCOVERs broadcast on a fixed schedule; RTT to the OFFER with the same xid."""
    template = bytearray(pxe_discover())
    result = DhcpResult()
    sock = client_udp(ns, 68, timeout)
    try:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            xid = 0x0B00_0000 + i
            template[4:8] = xid.to_bytes(4, "big")
            sent = time.perf_counter()
            sock.sendto(template, ("255.255.255.255", 67))
            deadline = sent + timeout
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    result.lost += 1
                    break
                sock.settimeout(left)
                try:
                    data = sock.recv(2048)
                except TimeoutError:
                    result.lost += 1
                    break
                if data[:1] == b"\x02" and data[4:8] == template[4:8]:
                    result.rtts.append(time.perf_counter() - sent)
                    break
    finally:
        sock.close()
    return result


def tftp_fetch(ns: Namespace, path: str, blksize: int, timeout: float = 2.0) -> tuple[float, int]:
    """Fetch `path` over TFTP (RRQ with blksize and tsize, lock-step ACKs): (seconds, bytes).
    Any lost packet fails the fetch: on a veth link that would itself be the finding."""
    sock = client_udp(ns, 0, timeout)
    try:
        options = b"blksize\0%d\0tsize\x000\0" % blksize
        rrq = b"\x00\x01" + path.encode() + b"\0octet\0" + options
        started = time.perf_counter()
        sock.sendto(rrq, (SERVER_IP, 69))
        received = 0
        expected = 1
        while True:
            data, peer = sock.recvfrom(blksize + 4)
            opcode = struct.unpack_from("!H", data)[0]
            if opcode == 6:  # OACK
                sock.sendto(struct.pack("!HH", 4, 0), peer)
                continue
            if opcode == 5:
                raise RuntimeError(f"TFTP error: {data[4:-1].decode(errors='replace')}")
            block = struct.unpack_from("!H", data, 2)[0]
            if block == expected & 0xFFFF:
                received += len(data) - 4
                expected += 1
            sock.sendto(struct.pack("!HH", 4, block), peer)
            if block == (expected - 1) & 0xFFFF and len(data) - 4 < blksize:
                return time.perf_counter() - started, received
    finally:
        sock.close()


def tftp_probe(ns: Namespace, count: int, blksize: int, size: int) -> list[float]:
    times = []
    for _ in range(count):
        seconds, got = tftp_fetch(ns, TFTP_FILE, blksize)
        if got != size:
            raise RuntimeError(f"TFTP fetched {got} bytes, expected {size}")
        times.append(seconds)
    return times


# --- HTTP load ----------------------------------------------------------------------------


def curl_cmd(ns: Namespace, url: str, max_time: float, rate: str = "") -> list[str]:
    limit = ["--limit-rate", rate] if rate else []
    return ns.exec(
        "curl", "-s", "-o", "/dev/null", "--max-time", f"{max_time:.1f}", *limit,
        "-S", "-w", "%{size_download} %{time_total}\n", url,
    )  # fmt: skip


def rx_bytes(ns: Namespace, ifname: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns.name, "-s", "-j", "link", "show", ifname],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return int(json.loads(out)[0]["stats64"]["rx"]["bytes"])


class Load:
    """`parallel` curl processes downloading `url` again and again until `duration` is up.
    Every curl gets --max-time = what is left, so the load ends by itself."""

    def __init__(
        self, ns: Namespace, url: str, parallel: int, duration: float, rate: str = ""
    ) -> None:
        self.ns, self.url, self.parallel, self.duration = ns, url, parallel, duration
        self.rate = rate
        self.procs: list[subprocess.Popen | None] = [None] * parallel
        self.completed = 0
        self.cut = 0  # downloads still running at the deadline (curl exit 28)
        self.failed = 0
        self.error = ""
        self.seconds = 0.0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> None:
        self._rx0 = rx_bytes(self.ns, "vcli")
        self._t0 = time.monotonic()
        self._thread.start()

    def _reap(self, i: int) -> None:
        proc = self.procs[i]
        if proc is None:
            return
        _, err = proc.communicate()
        if proc.returncode == 0:
            self.completed += 1
        elif proc.returncode == 28:
            self.cut += 1
        else:
            self.failed += 1
            self.error = f"curl exit {proc.returncode}: {err.strip()}"
        self.procs[i] = None

    def _run(self) -> None:
        deadline = self._t0 + self.duration
        while not self._stop.is_set():
            now = time.monotonic()
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None:
                    self._reap(i)
                if self.failed >= self.parallel:  # misconfigured: stop rather than spin
                    deadline = now
                if self.procs[i] is None and deadline - now > 0.5:
                    self.procs[i] = subprocess.Popen(
                        curl_cmd(self.ns, self.url, deadline - now, self.rate),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    )  # fmt: skip
            if now >= deadline and all(p is None for p in self.procs):
                break
            time.sleep(0.05)
        self.seconds = time.monotonic() - self._t0
        self.bytes = rx_bytes(self.ns, "vcli") - self._rx0

    def wait(self) -> None:
        self._thread.join()

    def kill(self) -> None:
        self._stop.set()
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


# --- server CPU -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) user+system CPU seconds of process `pid`."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended (an executor worker)
        ticks = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if int(task.name) == pid:
            main += ticks
        else:
            other += ticks
    return main, other


# --- reporting ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def print_dhcp(label: str, result: DhcpResult, count: int) -> None:
    r = result.rtts
    if not r:
        print(f"  DHCP {label}: no OFFER at all ({result.lost}/{count} lost)")
        return
    print(
        f"  DHCP DISCOVER->OFFER {label:<10} n={len(r):>4}  lost={result.lost:<3} "
        f"median {ms(statistics.median(r))} ms  p95 {ms(pct(r, 0.95))} ms  "
        f"p99 {ms(pct(r, 0.99))} ms  max {ms(max(r))} ms"
    )


def print_tftp(label: str, times: list[float], size: int) -> None:
    print(
        f"  TFTP {TFTP_FILE} ({size} B) {label:<10} n={len(times):>3}  "
        f"median {ms(statistics.median(times))} ms  max {ms(max(times))} ms  "
        f"({size / statistics.median(times) / 1e6:.1f} MB/s at the median)"
    )


# --- main -----------------------------------------------------------------------------------


def make_big_file(path: Path, size: int, fill: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        if fill == "sparse":
            f.truncate(size)
        else:
            _write_random(f, size)
    # read it once so every download (the idle one too) is served from the page cache
    with open(path, "rb", buffering=0) as f:
        while f.read(16 * 1024 * 1024):
            pass


def _write_random(f, size: int) -> None:
    chunk = 16 * 1024 * 1024
    written = 0
    while written < size:
        n = min(chunk, size - written)
        f.write(os.urandom(n))
        written += n


@dataclass
class LayoutResult:
    """One `netboot serve` measured idle and under load."""

    layout: str
    idle_dhcp: DhcpResult
    busy_dhcp: DhcpResult
    idle_tftp: list[float]
    busy_tftp: list[float]
    http_idle_mbs: float = 0.0
    http_busy_mbs: float = 0.0
    main_cpu: float = 0.0  # share of one core
    other_cpu: float = 0.0


def run(args: argparse.Namespace, tmp: Path, cleanup: list) -> None:
    root = tmp / "root"
    big = root / BIG_FILE
    size = args.size_mb * 1024 * 1024
    t = time.monotonic()
    make_big_file(big, size, args.fill)
    print(f"big file: {args.size_mb} MiB ({args.fill}) in {time.monotonic() - t:.1f} s")

    tag = new_tag()
    server_ns = Namespace("ldsrv", tag)
    cleanup.append(server_ns.close)
    client_ns = Namespace("ldcli", tag)
    cleanup.append(client_ns.close)
    veth(server_ns, "vsrv", client_ns, "vcli")
    server_ns.up("vsrv", f"{SERVER_IP}/24")
    client_ns.up("vcli", f"{CLIENT_IP}/24")
    if args.no_sendfile:  # inherited by the serve process: aiohttp reads and writes chunks
        os.environ["AIOHTTP_NOSENDFILE"] = "1"
    if args.load_from == "busybox":
        # control: the same bytes from a C server in the server namespace, outside netboot's
        # process; what DHCP/TFTP lose then is CPU contention, not netboot's GIL
        httpd = server_ns.popen(
            "busybox", "httpd", "-f", "-p", f"{SERVER_IP}:8081", "-h", str(root),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cleanup.append(lambda: (httpd.kill(), httpd.wait()))
        time.sleep(0.5)
    layouts = [name for _ in range(args.rounds) for name in args.layouts.split(",")]
    results = []
    for i, layout in enumerate(layouts):
        serve = ServeProcess(
            server_ns, root, interface="vsrv", address=SERVER_IP, log_path=tmp / f"serve{i}.log"
        )
        cleanup.append(serve.stop)
        results.append(measure(args, serve, client_ns, layout, size))
        serve.stop()
    if len(results) > 1:
        summary(results)


def measure(
    args: argparse.Namespace, serve: ServeProcess, client_ns: Namespace, layout: str, size: int
) -> LayoutResult:
    """Start `netboot serve` with HTTP in `layout`, probe it idle and under load, stop."""
    os.environ["NETBOOT_HTTP_LAYOUT"] = layout  # inherited by the serve process
    serve.start()
    pid = serve.proc.pid
    tftp_size = (serve_root(serve) / TFTP_FILE).stat().st_size
    url = f"{serve.base}/{BIG_FILE}"
    if args.load_from == "busybox":
        url = f"http://{SERVER_IP}:8081/{BIG_FILE}"
    print(
        f"\n=== HTTP layout {layout!r}: netboot serve pid {pid} at {SERVER_IP}; sendfile "
        f"{'off' if args.no_sendfile else 'on'}; big file from {url}"
    )

    # warm up: first packets pay for imports and caches
    dhcp_probe(client_ns, 5, 0.01)
    tftp_probe(client_ns, 2, args.tftp_blksize, tftp_size)

    print("idle")
    idle_dhcp = dhcp_probe(client_ns, args.discovers, args.interval_ms / 1000)
    print_dhcp("idle", idle_dhcp, args.discovers)
    idle_tftp = tftp_probe(client_ns, args.tftp_fetches, args.tftp_blksize, tftp_size)
    print_tftp("idle", idle_tftp, tftp_size)
    out = subprocess.run(
        curl_cmd(client_ns, url, 120), capture_output=True, text=True, timeout=130
    ).stdout.split()
    got, seconds = int(out[0]), float(out[1])
    if got != size:
        raise RuntimeError(f"HTTP idle download got {got} of {size} bytes")
    print(
        f"  HTTP one download of {args.size_mb} MiB: {seconds:.2f} s, "
        f"{got / seconds / 1e6:.0f} MB/s"
    )

    limit = f", each limited to {args.limit_rate}B/s" if args.limit_rate else ""
    print(f"under load: {args.parallel} parallel curl downloads for {args.duration:.0f} s{limit}")
    load = Load(client_ns, url, args.parallel, args.duration, args.limit_rate)
    cpu0 = cpu_seconds(pid)
    load.start()
    try:
        time.sleep(args.warmup)
        busy_dhcp = dhcp_probe(client_ns, args.discovers, args.interval_ms / 1000)
        busy_tftp = tftp_probe(client_ns, args.tftp_fetches, args.tftp_blksize, tftp_size)
        overlapped = load.running
        load.wait()
    finally:
        load.kill()
    cpu1 = cpu_seconds(pid)
    print_dhcp("loaded", busy_dhcp, args.discovers)
    print_tftp("loaded", busy_tftp, tftp_size)
    if not overlapped:
        print("  WARNING: the load ended before the probes did; raise --duration")
    print(
        f"  HTTP aggregate: {load.bytes / load.seconds / 1e6:.0f} MB/s over {load.seconds:.1f} s "
        f"({load.bytes / 2**30:.2f} GiB; {load.completed} downloads completed, "
        f"{load.cut} cut at the deadline, {load.failed} failed)"
    )
    if load.failed:
        print(f"  WARNING: {load.failed} downloads failed, last: {load.error}")
    main_cpu, other_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    print(
        f"  server CPU during the load: main thread (DHCP/TFTP loop"
        f"{', HTTP too' if layout == 'loop' else ''}) {main_cpu / load.seconds * 100:.0f}%, "
        f"other threads {other_cpu / load.seconds * 100:.0f}% of one core"
    )
    stats = serve.api("/api/stats")
    print(f"  server stats: dhcp {stats.get('dhcp')}, tftp transfers "
          f"{stats.get('tftp', {}).get('completed')}")  # fmt: skip
    return LayoutResult(
        layout, idle_dhcp, busy_dhcp, idle_tftp, busy_tftp,
        got / seconds / 1e6, load.bytes / load.seconds / 1e6,
        main_cpu / load.seconds, other_cpu / load.seconds,
    )  # fmt: skip


def serve_root(serve: ServeProcess) -> Path:
    return Path(serve.args[serve.args.index("--root") + 1])


def summary(results: list[LayoutResult]) -> None:
    """One line per run, in run order, so layouts measured alternately can be compared."""
    print("\nsummary (ms; DHCP n = --discovers, TFTP n = --tftp-fetches; CPU % of one core)")
    print(
        "layout  | DHCP idle med/p95/max | DHCP load med/p95/p99/max | TFTP idle med/max "
        "| TFTP load med/max | HTTP load MB/s | CPU main/other | lost"
    )
    for r in results:
        i, b = r.idle_dhcp.rtts, r.busy_dhcp.rtts
        if not i or not b:
            print(f"{r.layout:<7} | no OFFERs")
            continue
        print(
            f"{r.layout:<7} | {ms(statistics.median(i))}/{ms(pct(i, 0.95))}/{ms(max(i))} | "
            f"{ms(statistics.median(b))}/{ms(pct(b, 0.95))}/{ms(pct(b, 0.99))}/{ms(max(b))} | "
            f"{ms(statistics.median(r.idle_tftp))}/{ms(max(r.idle_tftp))} | "
            f"{ms(statistics.median(r.busy_tftp))}/{ms(max(r.busy_tftp))} | "
            f"{r.http_busy_mbs:.0f} | {r.main_cpu * 100:.0f}/{r.other_cpu * 100:.0f} | "
            f"{r.idle_dhcp.lost + r.busy_dhcp.lost}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="big file size (MiB)")
    parser.add_argument("--fill", choices=("sparse", "random"), default="sparse",
                        help="sparse (no disk writes; pages come from the page cache "
                        "either way) or random bytes")  # fmt: skip
    parser.add_argument("--parallel", type=int, default=16, help="parallel curl downloads")
    parser.add_argument("--duration", type=float, default=20, help="load duration (s)")
    parser.add_argument("--warmup", type=float, default=2, help="load before probing (s)")
    parser.add_argument("--discovers", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=20)
    parser.add_argument("--tftp-fetches", type=int, default=10)
    parser.add_argument("--tftp-blksize", type=int, default=1468)
    parser.add_argument("--no-sendfile", action="store_true",
                        help="serve with AIOHTTP_NOSENDFILE=1: file data goes through Python "
                        "(256 KiB reads in the executor, writes on the HTTP loop), the "
                        "worst case for the GIL")  # fmt: skip
    parser.add_argument("--load-from", choices=("netboot", "busybox"), default="netboot",
                        help="who serves the big file: netboot's HTTP, or (control) busybox "
                        "httpd in the same namespace")  # fmt: skip
    parser.add_argument("--layouts", default="thread",
                        help="HTTP layouts to measure one after the other in this run: "
                        "'thread' (aiohttp on its own thread and loop) and/or 'loop' "
                        "(aiohttp on the main loop with DHCP and TFTP); sets "
                        "NETBOOT_HTTP_LAYOUT")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the --layouts sequence this many times (alternating "
                        "layouts evens out drift in the shared machine's load)")  # fmt: skip
    parser.add_argument("--limit-rate", default="", metavar="RATE",
                        help="curl --limit-rate per download, e.g. 7500K: 16 of them fill a "
                        "1 Gb/s link (default: unlimited, as fast as the veth goes)")  # fmt: skip
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, ports 67/69/80)")
    if not 1 <= args.parallel <= 64 or not 1 <= args.duration <= 300:
        parser.error("--parallel 1..64 and --duration 1..300 keep this bench bounded")
    if not 1 <= args.rounds <= 5:
        parser.error("--rounds 1..5 keeps this bench bounded")
    if not set(args.layouts.split(",")) <= {"thread", "loop"}:
        parser.error("--layouts: a comma-separated list of 'thread' and 'loop'")

    print(f"{os.cpu_count()} CPUs, {' '.join(os.uname()[2:3])}, Python {sys.version.split()[0]}")
    return run_cleaned("nb-load-", lambda tmp, cleanup: run(args, tmp, cleanup))


def run_cleaned(prefix: str, body: Callable[[Path, list], None]) -> int:
    """`body(tmp, cleanup)` with SIGTERM taken as Ctrl-C; whatever happens, the steps it
    appended to `cleanup` run in reverse and the temp dir goes (bench/dhcp_rate.py too)."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    cleanup: list = []
    try:
        body(tmp, cleanup)
    except KeyboardInterrupt:
        print("interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # cleanup must go on
                print(f"cleanup: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
