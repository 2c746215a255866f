"""TFTP throughput and event-loop lag over loopback, with atftp (a C client) fetching.

    .venv/bin/python bench/tftp_throughput.py [--size-mb 50] [--windows 1,16]

For each blksize (512, 1468, 8192) and windowsize, one ~50 MB random file is fetched from a
netboot TftpServer running on this process's event loop while a 10 ms ticker measures how
late the loop wakes it (the lag DHCP would see). Also times tftpy's DATA/ACK codec against
plain struct, the reason the server's per-block path uses struct. The side-by-side
comparison with dnsmasq (no options, the iPXE binary with many clients at once) is
bench/tftp_versus_dnsmasq.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import tempfile
import time
import timeit
from pathlib import Path

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketDAT

from netboot.tftp import TftpServer

TICK = 0.010


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(TICK)
        lags.append(loop.time() - before - TICK)


async def fetch(port: int, name: str, dest: Path, blksize: int, window: int) -> float:
    cmd = ["atftp", "--option", f"blksize {blksize}"]
    if window > 1:
        cmd += ["--option", f"windowsize {window}"]
    cmd += ["-g", "-r", name, "-l", str(dest), "127.0.0.1", str(port)]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    seconds = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(f"atftp failed: {err.decode(errors='replace')}")
    return seconds


async def run(size_mb: int, windows: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        source = root / "big.bin"
        source.write_bytes(os.urandom(size_mb * 1024 * 1024))
        dest = Path(tmp) / "got.bin"
        server = TftpServer(root)
        await server.start("127.0.0.1", 0)
        print(f"{size_mb} MiB over loopback, client atftp, 10 ms ticker on the server loop")
        header = ("blksize", "window", "seconds", "MB/s", "lag med", "lag max")
        print("{:>7} {:>6} {:>8} {:>7} {:>8} {:>8}".format(*header))
        try:
            for window in windows:
                for blksize in (512, 1468, 8192):
                    lags: list[float] = []
                    stop = asyncio.Event()
                    tick = asyncio.create_task(ticker(lags, stop))
                    seconds = await fetch(server.port, "big.bin", dest, blksize, window)
                    stop.set()
                    await tick
                    if dest.read_bytes() != source.read_bytes():
                        raise SystemExit(f"corrupt copy at blksize {blksize} window {window}")
                    mbps = source.stat().st_size / seconds / 1e6
                    print(
                        f"{blksize:>7} {window:>6} {seconds:>8.2f} {mbps:>7.1f} "
                        f"{statistics.median(lags) * 1e3:>6.2f}ms {max(lags) * 1e3:>6.2f}ms"
                    )
        finally:
            await server.close()


def codec_figures() -> None:
    payload = os.urandom(1468)
    ack = struct.pack("!HH", 4, 1234)
    factory = TftpPacketFactory()
    head = struct.Struct("!HH")

    def tftpy_dat() -> bytes:
        packet = TftpPacketDAT()
        packet.blocknumber, packet.data = 1234, payload
        return packet.encode().buffer

    cases = {
        "DATA encode, tftpy": tftpy_dat,
        "DATA encode, struct": lambda: head.pack(3, 1234) + payload,
        "ACK decode, tftpy": lambda: factory.parse(ack).blocknumber,
        "ACK decode, struct": lambda: head.unpack_from(ack)[1],
    }
    for name, func in cases.items():
        n = 20000
        seconds = min(timeit.repeat(func, number=n, repeat=3))
        print(f"{name:<22} {seconds / n * 1e6:6.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--windows", default="1,16", help="comma-separated windowsizes")
    args = parser.parse_args()
    codec_figures()
    asyncio.run(run(args.size_mb, [int(w) for w in args.windows.split(",")]))


if __name__ == "__main__":
    sys.exit(main())
