#!/usr/bin/env python3
"""One simulated PXE client of `bench/storm.py`, run inside its namespace.

The real sequence, with this client's MAC: firmware PXE DISCOVER (a captured OVMF packet)
-> proxy offer -> request to port 4011 -> TFTP of the iPXE binary (blksize 512, no options,
as a BIOS ROM does) -> iPXE's DHCP (captured iPXE packet) -> boot script (chain, then the
menu for this MAC) -> kernel -> initrds -> with --image: the add-on initrd's own lib.sh
(`nb_parse_cmdline` on the script's kernel command line, then `nb_get_http`) in busybox sh.
Prints one JSON line: timings, ok, and the error if any.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PACKETS = Path(__file__).resolve().parent.parent / "tests" / "data" / "packets"
CLIENT_DIR = Path(__file__).resolve().parent.parent / "ipxe" / "initrd"


def dhcp_options(payload: bytes) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    i = 240
    while i < len(payload):
        code = payload[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        length = payload[i + 1]
        options[code] = payload[i + 2 : i + 2 + length]
        i += 2 + length
    return options


def patched(name: str, xid: int, mac: bytes, ciaddr: str = "") -> bytes:
    data = bytearray((PACKETS / name).read_bytes())
    data[4:8] = xid.to_bytes(4, "big")
    data[28:34] = mac
    if ciaddr:
        data[12:16] = socket.inet_aton(ciaddr)
    return bytes(data)


def exchange(
    sock: socket.socket, payload: bytes, dest: tuple[str, int], xid: int
) -> tuple[bytes, float]:
    """Send, wait for the reply with our xid, resending after 1, 2, 4 and 8 s (a PXE ROM
    backs off likewise: 4, 8, 16, 32 s); (reply, seconds since the last send)."""
    for wait in (1, 2, 4, 8):
        start = time.monotonic()
        sock.sendto(payload, dest)
        deadline = start + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply, _ = sock.recvfrom(4096)
            except TimeoutError:
                break
            if len(reply) > 240 and reply[0] == 2 and int.from_bytes(reply[4:8], "big") == xid:
                return reply, time.monotonic() - start
    raise RuntimeError(f"no DHCP answer to {dest}")


def boot_file(reply: bytes) -> str:
    name = dhcp_options(reply).get(67) or reply[108:236].split(b"\0", 1)[0]
    return name.decode()


def tftp_get(server: str, name: str) -> tuple[int, float]:
    """RRQ without options (blksize 512), resending the last packet after 2 s of silence
    like a PXE ROM (5 tries); (bytes, seconds)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    start = time.monotonic()
    last, peer = b"\0\1" + name.encode() + b"\0octet\0", (server, 69)
    size, expected, tries = 0, 1, 0
    while True:
        sock.sendto(last, peer)
        try:
            data, sender = sock.recvfrom(4 + 65464)
        except TimeoutError:
            tries += 1
            if tries >= 5:
                raise RuntimeError(f"TFTP timed out at block {expected}") from None
            continue
        tries = 0
        if int.from_bytes(data[:2], "big") == 5:
            raise RuntimeError(f"TFTP error {data[4:-1].decode(errors='replace')}")
        peer = sender
        block = int.from_bytes(data[2:4], "big")
        last = b"\0\4" + data[2:4]
        if block == expected & 0xFFFF:
            size += len(data) - 4
            expected += 1
            if len(data) - 4 < 512:
                sock.sendto(last, peer)
                return size, time.monotonic() - start


def http_get(url: str, out: Path | None = None) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        if out is None:
            return response.read()
        with open(out, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    return b""


def run(args: argparse.Namespace) -> dict:
    mac = bytes.fromhex(args.mac.replace(":", ""))
    result: dict = {"mac": args.mac, "ok": False}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("0.0.0.0", 68))
    xid = random.getrandbits(32)
    _, result["dhcp_discover_s"] = exchange(
        sock, patched("ovmf-pxe-discover.bin", xid, mac), ("255.255.255.255", 67), xid
    )
    xid = random.getrandbits(32)
    ack, result["dhcp_4011_s"] = exchange(
        sock,
        patched("ovmf-pxe-request-4011.bin", xid, mac, args.ip),
        (args.server, 4011),
        xid,
    )
    result["tftp_bytes"], result["tftp_s"] = tftp_get(args.server, boot_file(ack))
    xid = random.getrandbits(32)
    offer, result["dhcp_ipxe_s"] = exchange(
        sock, patched("efi-ipxe-discover.bin", xid, mac), ("255.255.255.255", 67), xid
    )
    sock.close()
    script_url = boot_file(offer)
    start = time.monotonic()
    http_get(script_url)  # the chain stub
    query = f"?mac={args.mac}&platform=efi&buildarch=x86_64"
    script = http_get(script_url + query).decode()
    result["script_s"] = time.monotonic() - start
    kernel = re.search(r"^kernel (\S+) ((?:initrd=\S+ )*)(.*) \|\| goto failed$", script, re.M)
    if kernel is None:
        raise RuntimeError("no kernel line in the boot script")
    initrds = re.findall(r"^initrd --name (\S+) (\S+) \|\| goto failed$", script, re.M)
    run_dir = Path(args.run)
    start = time.monotonic()
    http_get(kernel.group(1), run_dir / "vmlinuz")
    for name, url in initrds:
        http_get(url, run_dir / name)
    result["kernel_initrd_s"] = time.monotonic() - start
    result["boot_bytes"] = sum(f.stat().st_size for f in run_dir.iterdir() if f.is_file())
    cmdline = kernel.group(3).replace("${mac:hexhyp}", args.mac.replace(":", "-"))
    cmdline = cmdline.replace("${mac}", args.mac)
    if args.image:
        start = time.monotonic()
        result["image_t0"] = time.time()
        result["image_rc"], result["image_log"] = fetch_image(args, cmdline, run_dir)
        result["image_t1"] = time.time()
        result["image_s"] = time.monotonic() - start
        result["ok"] = result["image_rc"] == 0
    else:
        result["ok"] = True
    return result


def fetch_image(args: argparse.Namespace, cmdline: str, run_dir: Path) -> tuple[int, str]:
    """The add-on's lib.sh, unchanged, on this command line (/proc/cmdline is the only
    thing stubbed, with the RAM mount: the file lands in run_dir/ram, on /dev/shm)."""
    script = f"""
NB_BB=/bin/busybox
. {args.addon}/lib.sh
NB_HOME={args.addon} NB_RUN={run_dir}/nb NB_NETDEV={args.iface}
nb_die() {{ echo "DIE: $*"; exit 3; }}
cat() {{ if [ "$1" = /proc/cmdline ]; then echo '{cmdline}'; else /bin/busybox cat "$@"; fi; }}
nb_ram_mount() {{ mkdir -p "$NB_RUN/ram"; }}
nb_parse_cmdline
nb_get_http
"""
    proc = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True)
    log = (proc.stdout + proc.stderr).strip().splitlines()
    keep = [line for line in log if "multicast" in line or "verified" in line or "DIE" in line]
    return proc.returncode, " | ".join(keep[-3:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mac", required=True)
    parser.add_argument("--ip", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--run", required=True)
    parser.add_argument("--addon", default="", help="unpacked add-on's netboot/ directory")
    parser.add_argument("--image", action="store_true", help="also fetch the image")
    args = parser.parse_args()
    Path(args.run).mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        result = run(args)
    except Exception as exc:  # one line per failed client, the bench counts them
        result = {"mac": args.mac, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["total_s"] = time.monotonic() - start
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
