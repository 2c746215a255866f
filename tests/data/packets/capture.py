#!/usr/bin/env python3
"""Capture the DHCP/TFTP packets real firmware sends, for tests/test_dhcp_codec.py.

Run as root from the repository: `python3 tests/data/packets/capture.py [SCENARIO...]`
(default: all of SCENARIOS). Each scenario builds a throwaway LAN of network namespaces (names
carry this pid, all deleted at the end): a bridge with a tap for QEMU, dnsmasq handing out
addresses only, and a PXE server in its own namespace (`netboot serve --dhcp proxy` from this
tree, dnsmasq as proxyDHCP with a boot menu, or none). An AF_PACKET socket on the tap sees
every frame; each UDP payload the client sends to ports 67/68/69/4011 is written to
OUT/SCENARIO-NN-*.bin and all frames to OUT/SCENARIO.pcap. README.md says which were kept.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PYTHON = os.environ.get("NETBOOT_PYTHON", "/work/main/.venv/bin/python")
OUT = Path(os.environ.get("CAPTURE_OUT", "/tmp/netboot-captures"))
OVMF = Path("/usr/share/OVMF")
MAC = "52:54:00:c0:ff:ee"
UUID = "8a1ec4e0-5c2b-4b7f-9d53-2f6e1c0ffee1"  # SMBIOS UUID: what option 97 carries
TAG = f"nbcap{os.getpid()}"
NS_LAN, NS_DHCP, NS_SRV = f"{TAG}-lan", f"{TAG}-dhcp", f"{TAG}-srv"
NET = f"10.{random.randint(64, 250)}.{random.randint(0, 250)}"
PORTS = {67, 68, 69, 4011}
CLONE_NEWNET = 0x40000000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def build_lan() -> None:
    for ns in (NS_LAN, NS_DHCP, NS_SRV):
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", NS_LAN, "link", "add", "br0", "type", "bridge")
    ip("-n", NS_LAN, "link", "set", "br0", "up")
    ip("-n", NS_LAN, "tuntap", "add", "dev", "tap0", "mode", "tap")
    ip("-n", NS_LAN, "link", "set", "tap0", "master", "br0", "up")
    for name, ns, addr in (("dhcp", NS_DHCP, f"{NET}.2/24"), ("srv", NS_SRV, f"{NET}.1/24")):
        veth = ["link", "add", f"v{name}", "netns", ns, "type", "veth", "peer"]
        ip(*veth, "name", f"p{name}", "netns", NS_LAN)
        ip("-n", NS_LAN, "link", "set", f"p{name}", "master", "br0", "up")
        ip("-n", ns, "addr", "add", addr, "dev", f"v{name}")
        ip("-n", ns, "link", "set", f"v{name}", "up")


def packet_socket(ns: str, ifname: str) -> socket.socket:
    """An AF_PACKET socket opened inside `ns` (it stays there after setns back)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sock.bind((ifname, 0))
    finally:
        libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)
    sock.settimeout(0.5)
    return sock


class Sniffer(threading.Thread):
    """Keeps every frame (for the pcap) and the client's UDP payloads to our ports."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.frames: list[tuple[float, bytes]] = []
        self.sent: list[tuple[int, bytes]] = []  # (destination port, UDP payload)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                frame = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.frames.append((time.time(), frame))
            if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            if frame[6:12] != bytes.fromhex(MAC.replace(":", "")):
                continue  # only what the client sends
            ihl = (frame[14] & 0x0F) * 4
            sport, dport, length = struct.unpack_from("!HHH", frame, 14 + ihl)
            if dport in PORTS or sport in PORTS:
                start = 14 + ihl + 8
                self.sent.append((dport, frame[start : start + length - 8]))


def write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in frames:
            f.write(struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(frame), len(frame)))
            f.write(frame)


def label(dport: int, payload: bytes) -> str:
    """A readable file name part: dhcp type/vendor class, or the TFTP file name."""
    if dport == 69:
        return "tftp-" + payload[2:].split(b"\0")[0].decode(errors="replace").replace("/", "_")
    kinds = {1: "discover", 3: "request", 8: "inform"}
    opts, i, kind, vendor = payload[240:], 0, "dhcp", ""
    while i + 1 < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        code, n = opts[i], opts[i + 1]
        if code == 53:
            kind = kinds.get(opts[i + 2], f"type{opts[i + 2]}")
        elif code == 60:
            vendor = opts[i + 2 : i + 2 + n].split(b":")[0].decode(errors="replace")
        elif code == 175:
            vendor += "-ipxe"
        i += 2 + n
    return f"{vendor or 'novendor'}-{kind}-{dport}"


def qemu(scenario: str, workdir: Path) -> list[str]:
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nodefaults", "-display"]
    cmd += ["none", "-serial", f"file:{OUT / (scenario + '.serial')}", "-no-reboot", "-boot"]
    cmd += ["n", "-uuid", UUID, "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]
    nic = f"virtio-net-pci,netdev=n0,mac={MAC}"
    if scenario.startswith("uefi"):
        vars_fd = workdir / "vars.fd"
        shutil.copy(OVMF / "OVMF_VARS_4M.fd", vars_fd)
        code = f"if=pflash,format=raw,readonly=on,file={OVMF / 'OVMF_CODE_4M.fd'}"
        cmd += ["-drive", code, "-drive", f"if=pflash,format=raw,file={vars_fd}"]
        nic += ",romfile="
    return in_ns(NS_LAN, *cmd, "-device", nic)


# scenario -> (PXE server in -srv, seconds at most, marker): the run ends 10 s after the
# client sent a packet containing the marker, or when QEMU exits
SCENARIOS = {
    "bios": ("netboot", 120, b"\x35\x01\x03"),  # iPXE ROM: DISCOVER, REQUEST, then HTTP
    "uefi": ("netboot", 240, b"iPXE"),  # OVMF PXE, TFTP snponly.efi, iPXE's DHCP
    "uefi-4011": ("dnsmasq", 240, b"\x00\x01ipxe/snponly"),  # boot menu -> REQUEST to 4011
    "uefi-http": ("none", 600, b"HTTPClient"),  # PXEv4, PXEv6 fail; then HTTP Boot
}


def start_servers(kind: str, root: Path) -> list[subprocess.Popen]:
    dnsmasq = ["dnsmasq", "--no-daemon", "--port=0", "--bind-interfaces", "--log-dhcp"]
    addresses = [*dnsmasq, "--interface=vdhcp", f"--dhcp-range={NET}.100,{NET}.199,1h"]
    addresses.append(f"--dhcp-leasefile={root}/leases")
    procs = [subprocess.Popen(in_ns(NS_DHCP, *addresses))]
    log = open(OUT / f"{kind}.log", "ab")
    if kind == "netboot":
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        serve = [PYTHON, "-m", "netboot", "serve", "--interface", "vsrv", "--address"]
        serve += [f"{NET}.1", "--root", str(root / "srv"), "--dhcp", "proxy"]
        procs.append(subprocess.Popen(in_ns(NS_SRV, *serve), env=env, stdout=log, stderr=log))
    elif kind == "dnsmasq":  # PXE menu (option 43): OVMF asks the boot server on 4011
        (root / "tftp" / "ipxe").mkdir(parents=True)
        shutil.copy("/usr/lib/ipxe/snponly.efi", root / "tftp" / "ipxe")
        proxy = [*dnsmasq, "--interface=vsrv", f"--dhcp-range={NET}.0,proxy", "--enable-tftp"]
        proxy += [f"--tftp-root={root}/tftp", '--pxe-service=x86-64_EFI,"netboot",ipxe/snponly']
        procs.append(subprocess.Popen(in_ns(NS_SRV, *proxy), stdout=log, stderr=log))
    time.sleep(5)
    return procs


def run(scenario: str) -> None:
    kind, seconds, marker = SCENARIOS[scenario]
    workdir = Path(tempfile.mkdtemp(prefix=f"{TAG}-"))
    procs: list[subprocess.Popen] = []
    try:
        build_lan()
        procs = start_servers(kind, workdir)
        sniffer = Sniffer(packet_socket(NS_LAN, "tap0"))
        sniffer.start()
        qemu_proc = subprocess.Popen(qemu(scenario, workdir))
        procs.insert(0, qemu_proc)  # stopped first
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and qemu_proc.poll() is None:
            if any(marker in payload for _, payload in sniffer.sent):
                deadline = min(deadline, time.monotonic() + 10)
            time.sleep(1)
        sniffer.stop.set()
        sniffer.join()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        for ns in (NS_LAN, NS_DHCP, NS_SRV):
            subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    write_pcap(OUT / f"{scenario}.pcap", sniffer.frames)
    for n, (dport, payload) in enumerate(sniffer.sent):
        (OUT / f"{scenario}-{n:02d}-{label(dport, payload)}.bin").write_bytes(payload)
    print(f"{scenario}: {len(sniffer.frames)} frames, {len(sniffer.sent)} client packets")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or list(SCENARIOS):
        run(name)
