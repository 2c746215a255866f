#!/usr/bin/env python3
"""Boot storm: a room of PXE clients in network namespaces against a real `netboot serve`.

    sudo .venv/bin/python bench/storm.py --clients 30 --transfer multicast|http \\
        --link-mbit 100 --image-mb 20 [--window 5]
    sudo .venv/bin/python bench/storm.py --protocol-only --clients 500 [--concurrency 50]

Room (testbed helpers): a bridge namespace, the server namespace (eth0 10.78.0.1/16) and
client namespaces (10.78.1.I/16), one veth pair each into the bridge, both ends shaped with
`tc tbf` at --link-mbit (the server's uplink and every client link, both directions).
Every client runs bench/storm_client.py: firmware PXE DISCOVER -> proxy offer -> 4011 ->
TFTP of the iPXE binary -> iPXE DHCP -> boot script -> kernel -> initrd -> the image with the
add-on initrd's own lib.sh (busybox), `netboot.transfer` set by `--boot-transfer`.

One client alone first, then all N together; ok = clients whose image passed lib.sh's
size + sha256 check. Prints the server's bytes sent, its CPU seconds, the machine's CPU
busy share and load average, then last the line
`storm transfer=M clients=N ok=K one_client_s=X all_s=Y ratio=Y/X`.
--protocol-only: no image (small kernel/initrd), clients in waves of --concurrency, DHCP and
TFTP latency percentiles and the server's RSS before and after; last line
`storm protocol clients=N ok=K ...`. Needs root; removes everything it made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed.bridge import Bridge  # noqa: E402
from testbed.netns import Namespace, new_tag  # noqa: E402
from testbed.serve import ServeProcess  # noqa: E402

SERVER_IP = "10.78.0.1"
IMAGE, VERSION = "storm", "20261202-000000"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROTOCOL_STEPS = {
    "dhcp_discover_s": "DHCP discover->offer",
    "dhcp_4011_s": "DHCP 4011 request->ack",
    "dhcp_ipxe_s": "iPXE DHCP discover->offer",
    "tftp_s": "TFTP iPXE binary (blksize 512)",
    "script_s": "HTTP boot script",
    "kernel_initrd_s": "HTTP kernel+initrd",
}


class Room:
    """Bridge + server + client namespaces, every veth end shaped."""

    def __init__(self, namespaces: int, mbit: int) -> None:
        tag = new_tag()
        self.mbit = mbit
        self.bridge_ns = Namespace("b", tag)
        self.bridge = Bridge(self.bridge_ns, "br0")
        self.server = Namespace("s", tag)
        self.clients: list[Namespace] = []
        self._plug(self.server, f"{SERVER_IP}/16")
        for index in range(1, namespaces + 1):
            ns = Namespace(f"c{index}", tag)
            self._plug(ns, f"10.78.{1 + index // 250}.{1 + index % 250}/16")
            self.clients.append(ns)

    def _plug(self, ns: Namespace, address: str) -> None:
        port = self.bridge.attach(ns, "eth0", address=address)
        ns.ip("route", "add", "default", "dev", "eth0")
        if self.mbit:
            for where, dev in ((ns, "eth0"), (self.bridge_ns, f"p{port}")):
                where.run("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                          f"{self.mbit}mbit", "burst", "64kb", "latency", "20ms")  # fmt: skip

    def address(self, ns: Namespace) -> str:
        out = ns.run("ip", "-4", "-o", "addr", "show", "eth0").stdout
        return out.split()[3].split("/")[0]

    def tx_bytes(self) -> int:
        return int(self.server.run("cat", "/sys/class/net/eth0/statistics/tx_bytes").stdout)

    def close(self) -> None:
        for ns in [*self.clients, self.server, self.bridge_ns]:
            ns.close()


def publish(root: Path, image_mb: int, small_mb: int) -> None:
    directory = root / "images" / IMAGE / "versions" / VERSION
    directory.mkdir(parents=True)
    payload = os.urandom(image_mb << 20)
    (directory / "root.squashfs").write_bytes(payload)
    (directory / "vmlinuz").write_bytes(os.urandom(small_mb << 20))
    (directory / "initrd.img").write_bytes(os.urandom(small_mb << 20))
    import hashlib

    manifest = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (root / "images" / IMAGE / "current").symlink_to(f"versions/{VERSION}")


def addon_home(root: Path, work: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "netboot", "initrd", "--root", str(root)],
                   check=True, env=env, capture_output=True)  # fmt: skip
    tree = work / "addon"
    tree.mkdir()
    with open(root / "netboot.img", "rb") as archive:
        subprocess.run(["cpio", "-idm", "--quiet"], stdin=archive, cwd=tree, check=True)
    return tree / "netboot"


def cpu_jiffies() -> tuple[int, int]:
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime stime cutime cstime: the udp-senders it reaped count too
    return sum(int(value) for value in fields[11:15]) / CLK_TCK


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wave(room: Room, indices: list[int], work: Path, home: Path | None) -> tuple[list[dict], float]:
    """Start clients `indices` together (client i in namespace i % namespaces); their results
    and the time from launch to the last one done."""
    procs = []
    start = time.monotonic()
    for i in indices:
        ns = room.clients[i % len(room.clients)]
        mac = f"52:54:00:78:{i // 256:02x}:{i % 256:02x}"
        cmd = [sys.executable, str(REPO / "bench/storm_client.py"), "--mac", mac,
               "--ip", client_ip(room, ns),
               "--server", SERVER_IP, "--run", str(work / f"c{i}")]  # fmt: skip
        if home is not None:
            cmd += ["--addon", str(home), "--image"]
        procs.append(ns.popen(*cmd, stdout=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        try:
            results.append(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            results.append({"ok": False, "error": f"client exited {proc.returncode}"})
    elapsed = time.monotonic() - start
    for i in indices:
        shutil.rmtree(work / f"c{i}", ignore_errors=True)
    return results, elapsed


_ADDRESSES: dict[str, str] = {}


def client_ip(room: Room, ns: Namespace) -> str:
    if ns.name not in _ADDRESSES:
        _ADDRESSES[ns.name] = room.address(ns)
    return _ADDRESSES[ns.name]


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    top = ordered[-1] * 1000
    return f"p50={at(0.5):.1f}ms p90={at(0.9):.1f}ms p99={at(0.99):.1f}ms max={top:.1f}ms"


def report_failures(results: list[dict]) -> None:
    for result in results:
        if not result.get("ok"):
            print(f"  failed {result.get('mac')}: {result.get('error') or result.get('image_log')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--transfer", choices=("http", "multicast"), default="http")
    parser.add_argument("--link-mbit", type=int, default=100, help="0: no shaping")
    parser.add_argument("--image-mb", type=int, default=20)
    parser.add_argument("--window", type=int, default=5, help="boot.multicast_window")
    parser.add_argument("--boot-file-mb", type=int, default=1, help="kernel and initrd size")
    parser.add_argument("--protocol-only", action="store_true")
    parser.add_argument("--concurrency", type=int, default=50, help="--protocol-only waves")
    parser.add_argument(
        "--passes", type=int, default=1,
        help="--protocol-only: run the same clients (same MACs) this many times; a flat RSS "
        "on the later passes separates per-client records from growth per boot",
    )  # fmt: skip
    args = parser.parse_args()
    protocol = args.protocol_only
    namespaces = min(args.clients, 50 if protocol else 250)
    work = Path(tempfile.mkdtemp(prefix="storm-", dir="/dev/shm"))
    room = Room(namespaces, args.link_mbit)
    serve = None
    try:
        root = work / "root"
        publish(root, 0 if protocol else args.image_mb, args.boot_file_mb)
        home = None if protocol else addon_home(root, work)
        serve = ServeProcess(
            room.server, root, log_path=work / "serve.log", interface="eth0",
            address=SERVER_IP, http_port=80, tftp_port=69, dhcp="proxy",
            extra=("--boot-transfer", args.transfer, "--boot-multicast-window", str(args.window),
                   "--boot-menu-timeout", "0"),
        ).start(timeout=60)  # fmt: skip
        pid = serve.proc.pid
        rss_start = rss_kb(pid)
        load_before = os.getloadavg()
        if protocol:
            run_protocol(args, room, work, pid, rss_start)
        else:
            run_storm(args, room, work, home, pid)
        print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    finally:
        if serve is not None:
            serve.stop()
        room.close()
        shutil.rmtree(work, ignore_errors=True)


def run_storm(args: argparse.Namespace, room: Room, work: Path, home: Path, pid: int) -> None:
    one, one_s = wave(room, [0], work, home)
    report_failures(one)
    print(f"one client: {one_s:.2f}s ok={sum(r['ok'] for r in one)}: {one[0].get('image_log')}")
    time.sleep(args.window + 2)  # the lone client's sender is gone
    tx0, cpu0, busy0 = room.tx_bytes(), process_cpu_s(pid), cpu_jiffies()
    results, all_s = wave(room, list(range(1, args.clients + 1)), work, home)
    tx1, cpu1, busy1 = room.tx_bytes(), process_cpu_s(pid), cpu_jiffies()
    ok = sum(1 for r in results if r.get("ok"))
    report_failures(results)
    via_mc = sum(1 for r in results if "received by multicast" in r.get("image_log", ""))
    busy = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    image_s = sorted(r.get("image_s", 0) for r in results if r.get("ok"))
    print(f"clients by multicast: {via_mc}, by HTTP: {ok - via_mc}")
    if ok == len(results) and one[0].get("ok"):
        phase = max(r["image_t1"] for r in results) - min(r["image_t0"] for r in results)
        print(
            f"image phase alone: one {one[0]['image_s']:.2f}s, all (first ask to last verified)"
            f" {phase:.2f}s, ratio {phase / one[0]['image_s']:.2f}"
        )
    if image_s:
        middle = image_s[len(image_s) // 2]
        print(
            f"image step per client: first {image_s[0]:.2f}s median {middle:.2f}s"
            f" last {image_s[-1]:.2f}s"
        )
    sent = tx1 - tx0
    boot = sum(r.get("boot_bytes", 0) for r in results)
    image = args.image_mb << 20
    print(
        f"server sent {sent / 2**20:.1f} MiB: boot files (kernel, initrds) {boot / 2**20:.1f} MiB,"
    )
    print(f"  the rest {(sent - boot) / 2**20:.1f} MiB = {(sent - boot) / image:.2f}x the image")
    print(
        f"server CPU {cpu1 - cpu0:.1f}s; machine CPU busy {busy:.0f}% over {all_s:.1f}s;"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"storm transfer={args.transfer} clients={args.clients} ok={ok} one_client_s={one_s:.2f}"
        f" all_s={all_s:.2f} ratio={all_s / one_s:.2f}"
    )


def run_protocol(
    args: argparse.Namespace, room: Room, work: Path, pid: int, rss_start: int
) -> None:
    results: list[dict] = []
    rss_samples = [rss_start]
    start = time.monotonic()
    for number in range(1, args.passes + 1):
        for first in range(0, args.clients, args.concurrency):
            indices = list(range(first, min(args.clients, first + args.concurrency)))
            done, _ = wave(room, indices, work, None)
            results += done
            rss_samples.append(rss_kb(pid))
        print(f"pass {number}: server RSS kB after each wave: {' '.join(map(str, rss_samples))}")
        rss_samples = rss_samples[-1:]
    elapsed = time.monotonic() - start
    ok = sum(1 for r in results if r.get("ok"))
    report_failures(results)
    for key, label in PROTOCOL_STEPS.items():
        print(f"{label}: {percentiles([r[key] for r in results if key in r])}")
    print(
        f"storm protocol clients={args.clients} passes={args.passes} ok={ok}"
        f" elapsed_s={elapsed:.1f} rss_start_kb={rss_start} rss_end_kb={rss_samples[-1]}"
    )


if __name__ == "__main__":
    main()
