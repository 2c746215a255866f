"""A boot storm's DHCP: PXE DISCOVERs at a fixed rate, netboot's proxyDHCP and dnsmasq's.

    sudo .venv/bin/python bench/dhcp_rate.py [--rates 1000,5000] [--seconds 1]
        [--servers netboot,dnsmasq] [--clients 1000] [--rounds 1]

The namespaces, veth link and DISCOVER of bench/serve_under_load.py: `netboot serve --dhcp
proxy` and then `dnsmasq` in proxy mode (`--dhcp-range=NET,proxy --pxe-service=...`) in the
server namespace, one after the other, each at every rate. A sender thread in the client
namespace broadcasts UEFI x64 PXE DISCOVERs on schedule (`--clients` distinct MACs, a
distinct xid each); the receiver matches OFFERs by xid. Latency = the kernel's receive
timestamp of the OFFER (SO_TIMESTAMPNS) minus the wall clock just before `sendto`, so the
bench's own Python does not add to it. Prints per server and rate: answered/sent, p50, p99
and max in ms, the server's CPU time per answer, and the load average before the step.

Needs root. Namespaces, veth and temp dir are removed at the end, on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from serve_under_load import (
    CLIENT_IP,
    CLK_TCK,
    SERVER_IP,
    client_udp,
    pct,
    pxe_discover,
    run_cleaned,
)

from testbed.netns import Namespace, new_tag, veth
from testbed.serve import ServeProcess

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
DRAIN_S = 1.0  # answers later than this after the last DISCOVER count as lost


@dataclass
class RateResult:
    server: str
    rate: int
    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    load: float = 0.0
    send_s: float = 0.0

    def line(self) -> str:
        got = len(self.rtts)
        if not got:
            return f"{self.server:<12} {self.rate:>6}/s  answered 0/{self.sent}"
        per = self.cpu_s / got * 1000
        return (
            f"{self.server:<12} {self.rate:>6}/s  answered {got}/{self.sent}  "
            f"p50 {pct(self.rtts, 0.5) * 1000:7.2f} ms  p99 {pct(self.rtts, 0.99) * 1000:7.2f} ms"
            f"  max {max(self.rtts) * 1000:7.2f} ms  CPU {per:.3f} ms/answer"
            f"  sent in {self.send_s:.2f} s  load {self.load:.2f}"
        )


def storm(ns: Namespace, rate: int, count: int, clients: int) -> tuple[int, list[float], float]:
    """Broadcast `count` DISCOVERs at `rate`/s; (sent, round trips in s, seconds sending)."""
    template = bytearray(pxe_discover())
    sock = client_udp(ns, 68, 0.2)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    base = int.from_bytes(os.urandom(2), "big") << 16
    done = threading.Event()
    sending = [0.0]

    def send() -> None:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            xid = base + i
            template[4:8] = xid.to_bytes(4, "big")
            template[28:34] = b"\x02\x00" + (i % clients).to_bytes(4, "big")
            sent_at[xid] = time.time()
            sock.sendto(template, ("255.255.255.255", 67))
        sending[0] = time.perf_counter() - start
        done.set()

    sender = threading.Thread(target=send)
    sender.start()
    drain_until = None
    try:
        while drain_until is None or time.monotonic() < drain_until:
            if drain_until is None and done.is_set():
                drain_until = time.monotonic() + DRAIN_S
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            if data[:1] != b"\x02" or len(data) < 8:
                continue
            xid = int.from_bytes(data[4:8], "big")
            stamp = next((a[2] for a in ancillary if a[1] == SO_TIMESTAMPNS), None)
            if xid in sent_at and xid not in rtts and stamp is not None:
                seconds, nanos = struct.unpack("qq", stamp[:16])
                rtts[xid] = seconds + nanos / 1e9 - sent_at[xid]
    finally:
        sender.join()
        sock.close()
    return count, list(rtts.values()), sending[0]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def measure(server: str, pid: int, client_ns: Namespace, args: argparse.Namespace) -> list:
    storm(client_ns, 100, 20, 20)  # warm up: imports, caches, the first of each kind
    results = []
    for rate in args.rates:
        result = RateResult(server, rate, load=os.getloadavg()[0])
        before = cpu_seconds(pid)
        result.sent, result.rtts, result.send_s = storm(
            client_ns, rate, int(rate * args.seconds), args.clients
        )
        result.cpu_s = cpu_seconds(pid) - before
        print(result.line(), flush=True)
        results.append(result)
        time.sleep(1)  # let the server's queue empty before the next step
    return results


def run_netboot(server_ns: Namespace, client_ns: Namespace, tmp: Path, args, cleanup) -> list:
    serve = ServeProcess(
        server_ns, tmp / "root", interface="vsrv", address=SERVER_IP,
        log_path=tmp / "serve.log", extra=tuple(args.serve_flags.split()),
    )  # fmt: skip
    cleanup.append(serve.stop)
    serve.start()
    print(f"netboot serve pid {serve.proc.pid}", flush=True)
    try:
        results = measure(args.label, serve.proc.pid, client_ns, args)
        print(f"  netboot dhcp counters: {serve.api('/api/stats').get('dhcp')}")
    finally:
        serve.stop()
    return results


def run_dnsmasq(server_ns: Namespace, client_ns: Namespace, tmp: Path, args, cleanup) -> list:
    net = SERVER_IP.rsplit(".", 1)[0] + ".0"
    proc = server_ns.popen(
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
        "--interface=vsrv", "--bind-interfaces", f"--dhcp-range={net},proxy",
        "--pxe-service=x86-64_EFI,netboot,ipxe/snponly.efi", f"--pid-file={tmp}/dnsmasq.pid",
        f"--dhcp-leasefile={tmp}/dnsmasq.leases",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    cleanup.append(lambda: (proc.kill(), proc.wait()))
    time.sleep(0.5)
    if proc.poll() is not None:
        raise RuntimeError(f"dnsmasq exited with {proc.returncode}")
    try:
        return measure("dnsmasq", proc.pid, client_ns, args)
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,5000", help="DISCOVERs per second, in order")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each step")
    parser.add_argument("--servers", default="netboot,dnsmasq")
    parser.add_argument("--clients", type=int, default=1000, help="distinct MACs")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole sequence")
    parser.add_argument("--serve-flags", default="", help="more `netboot serve` flags")
    parser.add_argument("--label", default="netboot",
                        help="name of netboot's rows (the tree served is the one `python -m "
                        "netboot` imports from the current directory: run from another "
                        "checkout to measure it)")  # fmt: skip
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, port 67)")
    if not all(1 <= r <= 20000 for r in args.rates) or not 0.1 <= args.seconds <= 30:
        parser.error("--rates 1..20000 and --seconds 0.1..30 keep this bench bounded")
    servers = args.servers.split(",")
    if not set(servers) <= {"netboot", "dnsmasq"} or not 1 <= args.rounds <= 5:
        parser.error("--servers: netboot and/or dnsmasq; --rounds 1..5")

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(f"{started}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(f"command: {' '.join(sys.argv)}")
    results: list[RateResult] = []

    def body(tmp: Path, cleanup: list) -> None:
        tag = new_tag()
        server_ns, client_ns = Namespace("rtsrv", tag), Namespace("rtcli", tag)
        cleanup += [server_ns.close, client_ns.close]
        veth(server_ns, "vsrv", client_ns, "vcli")
        server_ns.up("vsrv", f"{SERVER_IP}/24")
        client_ns.up("vcli", f"{CLIENT_IP}/24")
        runners = {"netboot": run_netboot, "dnsmasq": run_dnsmasq}
        for _ in range(args.rounds):
            for name in servers:
                results.extend(runners[name](server_ns, client_ns, tmp, args, cleanup))

    status = run_cleaned("nb-rate-", body)
    print("\nsummary")
    for result in results:
        print(result.line())
    return status


if __name__ == "__main__":
    sys.exit(main())
