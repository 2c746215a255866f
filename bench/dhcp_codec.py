"""Cost per packet of the DHCP path: byte pre-filter vs scapy decode vs reply build.

    .venv/bin/python bench/dhcp_codec.py [--number 20000] [--repeat 5]

Two packets: a plain (non-PXE) DHCP DISCOVER as a Linux or Windows client sends it, the
traffic a busy LAN is full of and that netboot's proxy ignores after the pre-filter; and a
UEFI x64 PXE DISCOVER, which is decoded and answered. For each, timeit (best of --repeat)
of `glance` (netboot.dhcp.prefilter), `parse` (scapy decode, netboot.dhcp.packet),
`build_reply` with `pxe_options` (the OFFER), and `ProxyDhcpServer.handle` end to end (what
the loop really spends per datagram: pre-filter, and for PXE decode + policy + record +
encode) with the template cache off (`full`: scapy both ways) and on (`handle`: struct
decode, a patched template; netboot/dhcp/fastpath.py). Prints µs per packet. No network, no
root needed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import timeit
from pathlib import Path

from scapy.layers.dhcp import BOOTP, DHCP

from netboot.boot import BootPolicy
from netboot.config import apply_overrides, defaults
from netboot.dhcp.facts import facts_from_request
from netboot.dhcp.packet import OFFER, build_reply, parse
from netboot.dhcp.prefilter import glance
from netboot.dhcp.proxy import ProxyDhcpServer
from netboot.dhcp.pxe import pxe_options
from netboot.records import ClientRecords

SERVER_IP = "192.0.2.1"
PARAMS_LINUX = bytes([1, 2, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121])
PARAMS_UEFI = bytes(
    [1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50,
     51, 54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135]
)  # fmt: skip


def _bootp(mac: str, options: list) -> bytes:
    chaddr = bytes.fromhex(mac.replace(":", "")) + b"\0" * 10
    return bytes(BOOTP(op=1, chaddr=chaddr, xid=0x5EED1234) / DHCP(options=options))


def plain_discover() -> bytes:
    """What dhclient / NetworkManager sends: no option 60 PXEClient, so we ignore it."""
    return _bootp(
        "52:54:00:12:34:56",
        [
            ("message-type", "discover"),
            ("client_id", b"\x01\x52\x54\x00\x12\x34\x56"),
            ("requested_addr", "192.0.2.77"),
            ("hostname", b"desk-042"),
            ("vendor_class_id", b"MSFT 5.0"),
            ("param_req_list", list(PARAMS_LINUX)),
            ("max_dhcp_size", 1500),
            "end",
        ],
    )


def uefi_pxe_discover() -> bytes:
    """An x64 UEFI PXE ROM's first DISCOVER (arch 7, UNDI 3.16, GUID)."""
    return _bootp(
        "52:54:00:ab:cd:ef",
        [
            ("message-type", "discover"),
            ("max_dhcp_size", 1472),
            ("param_req_list", list(PARAMS_UEFI)),
            ("pxe_client_architecture", b"\x00\x07"),
            ("pxe_client_network_interface", b"\x01\x03\x10"),
            ("pxe_client_machine_identifier", b"\x00" + bytes(range(1, 17))),
            ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003016"),
            "end",
        ],
    )


def proxy_server(root: Path, fast_path: bool = True) -> ProxyDhcpServer:
    config = apply_overrides(defaults(), {"server.root": str(root)})
    ipxe = root / "ipxe"
    ipxe.mkdir(parents=True, exist_ok=True)
    for name in ("undionly.kpxe", "snponly.efi", "ipxe.efi"):
        (ipxe / name).write_bytes(b"MZ")
    policy = BootPolicy(config, SERVER_IP, 80)
    return ProxyDhcpServer(policy, ClientRecords(), server_ip=SERVER_IP, fast_path=fast_path)


def per_packet_us(func, number: int, repeat: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=repeat)) / number * 1e6


def measure(
    server: ProxyDhcpServer, full: ProxyDhcpServer, data: bytes, number: int, repeat: int
) -> tuple[float, ...]:
    """µs per packet: glance, parse, build_reply(+pxe_options), handle without and with
    the template cache."""
    # scapy is ~100x slower than glance: time it with fewer calls so the run stays short
    slow = max(number // 20, 100)
    seen = glance(data)
    assert seen is not None and seen.msg_type == 1
    request = parse(data)
    answer = server.policy.pxe_answer(facts_from_request(request))
    reply = server.handle(data, ("0.0.0.0", 68), False)
    if seen.is_pxe:
        assert reply is not None
        options = pxe_options(request, answer)
    else:
        assert reply is None  # ignored after the pre-filter
        # what building an answer would cost if we did answer it
        options = [("vendor_class_id", b"PXEClient")]
    boot_file = getattr(answer, "boot_file", "ipxe/snponly.efi")

    def build() -> bytes:
        return build_reply(
            request,
            OFFER,
            server_ip=SERVER_IP,
            siaddr=SERVER_IP,
            boot_file=boot_file,
            options=options,
        )

    def handle() -> object:
        return server.handle(data, ("0.0.0.0", 68), False)

    def handle_full() -> object:
        return full.handle(data, ("0.0.0.0", 68), False)

    return (
        per_packet_us(lambda: glance(data), number, repeat),
        per_packet_us(lambda: parse(data), slow, repeat),
        per_packet_us(build, slow, repeat),
        per_packet_us(handle_full, slow if seen.is_pxe else number, repeat),
        per_packet_us(handle, number // 4 if seen.is_pxe else number, repeat),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timing (glance)")
    parser.add_argument("--repeat", type=int, default=5, help="timings, best one kept")
    args = parser.parse_args()

    packets = {"plain DISCOVER": plain_discover(), "UEFI PXE DISCOVER": uefi_pxe_discover()}
    print(f"Python {platform.python_version()}, best of {args.repeat}, µs per packet")
    print(
        f"{'packet':<18} {'bytes':>5} {'glance':>8} {'parse':>8} {'build':>8} {'full':>8} "
        f"{'handle':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        server = proxy_server(Path(tmp) / "root")
        full = proxy_server(Path(tmp) / "root", fast_path=False)
        for name, data in packets.items():
            times = measure(server, full, data, args.number, args.repeat)
            print(f"{name:<18} {len(data):>5} {times[0]:>8.2f} " + " ".join(
                f"{t:>8.1f}" for t in times[1:]))  # fmt: skip
    print("full/handle = ProxyDhcpServer.handle() without/with the template cache: plain ->")
    print("glance + ignore; PXE -> OFFER bytes (no log handler: records' log lines not written)")


if __name__ == "__main__":
    sys.exit(main())
