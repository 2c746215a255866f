"""netboot's TFTP server side by side with dnsmasq's, same files, same clients, same run.

    sudo .venv/bin/python bench/tftp_versus_dnsmasq.py [--size-mb 50] [--repeats 3]
        [--clients 1,10,50] [--small /boot/ipxe.efi] [--floor] [--pin]

Runs in a private network namespace (so dnsmasq can take 127.0.0.1:69 without touching the
host's port 69). netboot's TftpServer runs in a child process of its own, as dnsmasq does,
so client start-up never lands on its loop and its CPU time can be read from /proc. Cases:

- `50MB-noopt`: one 50 MB file, tftp-hpa's `tftp` (sends no options: blksize 512, one ACK
  per block, what many PXE ROMs do);
- `50MB-1468w16`: the same file with atftp asking blksize 1468 and windowsize 16 (dnsmasq
  ignores windowsize, so it runs lock-step);
- `small-noopt xN`: the small file (an iPXE binary) fetched by N tftp-hpa clients at once.

With `--floor`, a third server runs the no-options cases: the least a Python lock-step
server can do per block on the same event loop (`serve_floor`), the floor netboot is
measured against. Both Python servers run on the loop `netboot serve` runs on (uvloop;
`NETBOOT_LOOP=asyncio` for the stock asyncio loop). Every case runs netboot then dnsmasq
back to back, `--repeats` times; each line carries the 1-minute load average when it
started, wall seconds, the server's CPU ms, and its user and system CPU µs per DATA block
(from /proc, 10 ms ticks). The last lines are the ratios (dnsmasq seconds / netboot
seconds: above 1 means netboot is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from netboot import eventloop

CLONE_NEWNET = 0x40000000
PINNED = False  # --pin
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Case:
    name: str
    file: str
    clients: int
    options: list[str]  # atftp --option values; empty: tftp-hpa with no options
    blksize: int


def enter_private_netns() -> None:
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
        raise SystemExit(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())} (root?)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def client_command(case: Case, port: int, dest: Path) -> list[str]:
    pin = ["taskset", "-c", "1"] if PINNED else []
    return pin + _client_command(case, port, dest)


def _client_command(case: Case, port: int, dest: Path) -> list[str]:
    if not case.options:
        get = f"get {case.file} {dest}"
        return ["tftp", "127.0.0.1", str(port), "-m", "binary", "-c", *get.split()]
    command = ["atftp"]
    for option in case.options:
        command += ["--option", option]
    return [*command, "-g", "-r", case.file, "-l", str(dest), "127.0.0.1", str(port)]


def fetch_all(case: Case, port: int, root: Path, out: Path) -> float:
    dests = [out / f"got{i}" for i in range(case.clients)]
    for dest in dests:
        dest.unlink(missing_ok=True)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            client_command(case, port, dest), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for dest in dests
    ]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.monotonic() - started
    expected = (root / case.file).read_bytes()
    for dest, err in zip(dests, errors, strict=True):
        if not dest.exists() or dest.read_bytes() != expected:
            raise SystemExit(f"{case.name}: bad copy {dest}: {err.decode(errors='replace')}")
    return seconds


def start_python(root: Path, mode: str = "--serve") -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, mode, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin_server,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _pin_server() -> None:
    """With --pin, every server runs on CPU 0 (clients on CPU 1): the server its own
    machine, as on a LAN, instead of sharing both cores with 50 client processes."""
    if PINNED:
        os.sched_setaffinity(0, {0})


def start_dnsmasq(root: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--user=root", "--pid-file=",
         "--enable-tftp", f"--tftp-root={root}", "--tftp-max=500", "--log-facility=-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pin_server,
    )  # fmt: skip
    time.sleep(0.5)
    return proc, 69


def run(args: argparse.Namespace) -> None:
    enter_private_netns()
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "root", Path(tmp) / "out"
        root.mkdir()
        out.mkdir()
        (root / "big.bin").write_bytes(os.urandom(args.size_mb * 1024 * 1024))
        shutil.copy(args.small, root / "small.bin")
        small_kb = (root / "small.bin").stat().st_size // 1024
        windowed = ["blksize 1468", "windowsize 16"]
        cases = [
            Case(f"{args.size_mb}MB-noopt", "big.bin", 1, [], 512),
            Case(f"{args.size_mb}MB-1468w16", "big.bin", 1, windowed, 1468),
        ] + [Case(f"{small_kb}KB-noopt x{n}", "small.bin", n, [], 512) for n in args.clients]
        servers = {"netboot": start_python(root), "dnsmasq": start_dnsmasq(root)}
        if args.floor:
            servers["floor"] = start_python(root, "--serve-floor")
        seconds: dict[tuple[str, str], list[float]] = {}
        print(f"{'case':<18} {'server':<8} {'run':>3} {'load1':>5} {'seconds':>8} "
              f"{'cpu ms':>7} {'usr µs/b':>8} {'sys µs/b':>8}")  # fmt: skip
        try:
            for case in cases:
                blocks = case.clients * ((root / case.file).stat().st_size // case.blksize + 1)
                for repeat in range(1, args.repeats + 1):
                    for name, (proc, port) in servers.items():
                        if name == "floor" and case.options:
                            continue  # no options only
                        load = os.getloadavg()[0]
                        user, system = cpu_seconds(proc.pid)
                        took = fetch_all(case, port, root, out)
                        user_end, system_end = cpu_seconds(proc.pid)
                        user, system = user_end - user, system_end - system
                        seconds.setdefault((case.name, name), []).append(took)
                        print(f"{case.name:<18} {name:<8} {repeat:>3} {load:>5.2f} {took:>8.3f} "
                              f"{(user + system) * 1e3:>7.0f} {user / blocks * 1e6:>8.1f} "
                              f"{system / blocks * 1e6:>8.1f}", flush=True)  # fmt: skip
        finally:
            for proc, _ in servers.values():
                if proc.stdin is not None:
                    proc.stdin.close()  # the Python servers print their counters and exit
                else:
                    proc.terminate()
                proc.wait()
        for case in cases:
            ours, theirs = seconds[(case.name, "netboot")], seconds[(case.name, "dnsmasq")]
            ratios = " ".join(f"{t / o:.2f}" for o, t in zip(ours, theirs, strict=True))
            print(f"ratio {case.name}: dnsmasq_s/netboot_s per run = {ratios}")


async def serve(root: Path) -> None:
    """The child: a TftpServer on 127.0.0.1, its port on stdout, until stdin closes."""
    from netboot.tftp import TftpServer

    # loopback: every client has the same IP, a room has one IP per client
    server = TftpServer(root, max_per_client=100)
    await server.start("127.0.0.1", 0)
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.close()
    print(f"netboot stats: {dict(sorted(server.stats.items()))}", file=sys.stderr)


async def serve_floor(root: Path) -> None:
    """The child for --floor: a lock-step server with nothing but the per-block work (a
    loop reader per transfer, the file in memory, no options, timers, checks or counters)."""
    loop = asyncio.get_running_loop()
    paths = await asyncio.to_thread(lambda: list(root.iterdir()))
    files = {path.name.encode(): await asyncio.to_thread(path.read_bytes) for path in paths}
    head = struct.Struct("!HH")
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)

    def request() -> None:
        packet, client = listener.recvfrom(2048)
        data = files[packet[2:].split(b"\0")[0]]
        last, block = len(data) // 512 + 1, 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)

        def ack() -> None:
            nonlocal block
            got, _ = sock.recvfrom(2048)
            if head.unpack_from(got) != (4, block & 0xFFFF):
                return
            if block == last:
                loop.remove_reader(sock.fileno())
                sock.close()
                return
            block += 1
            start = (block - 1) * 512
            sock.sendto(head.pack(3, block & 0xFFFF) + data[start : start + 512], client)

        loop.add_reader(sock.fileno(), ack)
        sock.sendto(head.pack(3, 1) + data[:512], client)

    loop.add_reader(listener.fileno(), request)
    print(listener.getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", default="1,10,50", help="concurrent small-file clients")
    parser.add_argument("--small", default="/boot/ipxe.efi", help="the small file")
    parser.add_argument("--floor", action="store_true", help="also the floor server, see above")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, clients on CPU 1")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve or args.serve_floor:
        # the loop `netboot serve` runs on (uvloop; NETBOOT_LOOP=asyncio for the stock one)
        eventloop.run(serve(args.serve) if args.serve else serve_floor(args.serve_floor))
        return
    args.clients = [int(n) for n in args.clients.split(",")]
    global PINNED
    PINNED = args.pin
    run(args)


if __name__ == "__main__":
    sys.exit(main())
