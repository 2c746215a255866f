"""proxyDHCP over real sockets: scapy-built PXE clients in one namespace, `netboot serve` in
another, answers checked field by field."""

from __future__ import annotations

import os
import socket
import time

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from netboot.dhcp.packet import parse_reply
from netboot.dhcp.pxe import PXE_SKIP_DISCOVERY_WITH_MENU
from testbed.lan import SERVER_IP, Lan

pytestmark = pytest.mark.netns  # every test runs on the `lan` fixture

MAC = "52:54:00:aa:bb:01"
GUID = b"\x00" + bytes(range(1, 17))


def discover(
    arch: int | None,
    *,
    mac: str = MAC,
    vendor: bytes | None = None,
    ipxe: bool = False,
    msg: str = "discover",
    extra: list | None = None,
    ciaddr: str = "0.0.0.0",
) -> bytes:
    if vendor is None:
        vendor = f"PXEClient:Arch:{arch or 0:05d}:UNDI:003016".encode()
    options: list = [("message-type", msg), ("vendor_class_id", vendor)]
    if arch is not None:
        options.append(("pxe_client_architecture", arch.to_bytes(2, "big")))
    options.append(("pxe_client_machine_identifier", GUID))
    if ipxe:
        options += [("user_class", b"iPXE"), (175, b"\xb1\x05\x01\x24\x00\x00\x00")]
    options += (extra or []) + ["end"]
    chaddr = bytes.fromhex(mac.replace(":", "")) + b"\0" * 10
    return bytes(
        BOOTP(op=1, chaddr=chaddr, xid=0x1234ABCD, flags=0x8000, ciaddr=ciaddr)
        / DHCP(options=options)
    )


def exchange(
    lan: Lan,
    payload: bytes,
    *,
    port: int = 67,
    dest: str = "255.255.255.255",
    client_port: int = 68,
    timeout: float = 2.0,
):
    """Send one packet from the client namespace; return (reply, options) or None."""
    sock = lan.client_socket(client_port, timeout)
    try:
        sock.sendto(payload, (dest, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(4096)
            except TimeoutError:
                return None
            bootp, options = parse_reply(data)
            if bootp.op == 2 and bootp.xid == 0x1234ABCD:
                return bootp, options, data
        return None
    finally:
        sock.close()


def test_bios_pxe_gets_undionly_over_tftp(lan: Lan) -> None:
    answer = exchange(lan, discover(0))
    assert answer is not None, lan.serve.log()
    bootp, options, data = answer
    assert options[53] == 2  # OFFER
    assert options[54] == SERVER_IP
    assert options[60] == b"PXEClient"
    assert options[97] == GUID
    assert options[43] == bytes([6, 1, 8, 255])  # skip discovery, boot this file
    assert bootp.file.rstrip(b"\0") == b"ipxe/undionly.kpxe"
    assert bootp.siaddr == SERVER_IP
    assert bootp.yiaddr == "0.0.0.0"  # proxy mode never offers an address
    for lease_option in (1, 3, 51):
        assert lease_option not in options
    assert len(data) >= 300


@pytest.mark.parametrize("arch", [7, 9])
def test_x64_efi_gets_snponly(lan: Lan, arch: int) -> None:
    answer = exchange(lan, discover(arch))
    assert answer is not None
    bootp, options, _ = answer
    assert bootp.file.rstrip(b"\0") == b"ipxe/snponly.efi"
    assert options[60] == b"PXEClient"


def test_x64_efi_falls_back_to_ipxe_efi(lan: Lan) -> None:
    snponly = lan.root / "ipxe" / "snponly.efi"
    hidden = snponly.with_name("snponly.efi.hidden")
    snponly.rename(hidden)
    try:
        answer = exchange(lan, discover(7))
        assert answer is not None
        assert answer[0].file.rstrip(b"\0") == b"ipxe/ipxe.efi"
    finally:
        hidden.rename(snponly)


def test_arm64_answered_only_when_its_binary_exists(lan: Lan) -> None:
    assert exchange(lan, discover(11), timeout=1.5) is None
    assert "no iPXE binary for efi-arm64" in lan.serve.log()
    binary = lan.root / "ipxe" / "snponly-arm64.efi"
    binary.write_bytes(b"MZ fake arm64 binary")
    try:
        answer = exchange(lan, discover(11))
        assert answer is not None
        assert answer[0].file.rstrip(b"\0") == b"ipxe/snponly-arm64.efi"
    finally:
        binary.unlink()


def test_uefi_http_boot_gets_a_url(lan: Lan) -> None:
    answer = exchange(lan, discover(16, vendor=b"HTTPClient:Arch:00016:UNDI:003001"))
    assert answer is not None
    bootp, options, _ = answer
    url = f"http://{SERVER_IP}/ipxe/ipxe.efi".encode()
    assert bootp.file.rstrip(b"\0") == url
    assert options[67] == url
    assert options[60] == b"HTTPClient"
    assert 43 not in options
    # and the URL really serves the binary
    fetched = lan.serve.curl(
        "/ipxe/ipxe.efi", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"
    )
    assert fetched.stdout.split()[0] == "200"
    assert int(fetched.stdout.split()[1]) == os.path.getsize("/usr/lib/ipxe/ipxe.efi")


def test_ipxe_client_gets_the_script_url(lan: Lan) -> None:
    answer = exchange(lan, discover(0, vendor=b"PXEClient:Arch:00000:UNDI:002001", ipxe=True))
    assert answer is not None
    bootp, options, _ = answer
    assert bootp.file.rstrip(b"\0") == f"http://{SERVER_IP}/boot.ipxe".encode()
    assert bootp.siaddr == SERVER_IP
    assert options[43] == PXE_SKIP_DISCOVERY_WITH_MENU  # iPXE drops proxy ACKs without a menu


def test_ipxe_proxy_request_on_4011_gets_ack_with_pxe_options(lan: Lan) -> None:
    payload = discover(
        0,
        vendor=b"PXEClient:Arch:00000:UNDI:002001",
        ipxe=True,
        msg="request",
        ciaddr="10.231.0.50",
        extra=[("server_id", SERVER_IP)],
    )
    answer = exchange(lan, payload, port=4011, dest=SERVER_IP)
    assert answer is not None
    bootp, options, _ = answer
    assert options[53] == 5
    assert options[43] == PXE_SKIP_DISCOVERY_WITH_MENU
    assert options[43][:3] == bytes([6, 1, 8])  # ...and boot the file, skipping that menu
    assert bootp.file.rstrip(b"\0") == f"http://{SERVER_IP}/boot.ipxe".encode()


def test_non_pxe_discover_is_ignored(lan: Lan) -> None:
    before = lan.serve.api("/api/stats")["dhcp"].get("ignored", 0)
    plain = discover(None, vendor=b"udhcp 1.35.0")
    assert exchange(lan, plain, timeout=1.0) is None
    assert lan.serve.api("/api/stats")["dhcp"]["ignored"] == before + 1


def test_request_on_4011_gets_ack(lan: Lan) -> None:
    payload = discover(7, msg="request", ciaddr="10.231.0.50")
    answer = exchange(lan, payload, port=4011, dest=SERVER_IP, client_port=4011)
    assert answer is not None
    bootp, options, _ = answer
    assert options[53] == 5  # ACK
    assert options[60] == b"PXEClient"
    assert options[97] == GUID
    assert bootp.file.rstrip(b"\0") == b"ipxe/snponly.efi"
    record = lan.serve.api(f"/api/clients/{MAC}")
    assert record["ip"] == "10.231.0.50"
    assert "proxy-ack" in [e["kind"] for e in record["events"]]


def test_request_to_another_server_is_left_alone(lan: Lan) -> None:
    foreign = discover(
        0,
        msg="request",
        extra=[("server_id", "10.231.0.2"), ("requested_addr", "10.231.0.77")],
        mac="52:54:00:aa:bb:07",
    )
    assert exchange(lan, foreign, timeout=1.0) is None
    # ...but the address it asked for is remembered for its later TFTP/HTTP steps
    ours = discover(0, msg="request", extra=[("server_id", SERVER_IP)], mac="52:54:00:aa:bb:07")
    answer = exchange(lan, ours)
    assert answer is not None and answer[1][53] == 5
    assert lan.serve.api("/api/clients/52:54:00:aa:bb:07")["ip"] == "10.231.0.77"


def test_garbage_is_dropped_and_counted_and_the_server_keeps_answering(lan: Lan) -> None:
    before = lan.serve.api("/api/stats")["dhcp"].get("malformed", 0)
    good = discover(0)
    junk = [
        b"\x01" + os.urandom(400),  # BOOTREQUEST op, random rest
        good[:120],  # truncated inside the fixed header
        good[:250],  # truncated inside the options
        good[:240] + bytes([53, 1, 1, 60, 200]) + b"PXEClient",  # option runs past the end
        good[:240] + bytes([53, 1, 1, 60, 9]) + b"PXEClient" + bytes([55, 3, 1]),
    ]
    sock = lan.client_socket()
    try:
        for packet in junk:
            sock.sendto(packet, ("255.255.255.255", 67))
    finally:
        sock.close()
    answer = exchange(lan, good)
    assert answer is not None, lan.serve.log()
    stats = lan.serve.api("/api/stats")["dhcp"]
    assert stats["malformed"] >= before + 3
    assert stats.get("errors", 0) == 0
    assert lan.serve.proc is not None and lan.serve.proc.poll() is None


def test_offer_is_recorded_with_arch_and_firmware(lan: Lan) -> None:
    mac = "52:54:00:aa:bb:09"
    assert exchange(lan, discover(7, mac=mac)) is not None
    record = lan.serve.api(f"/api/clients/{mac}")
    offer = [e for e in record["events"] if e["kind"] == "dhcp-offer"][-1]
    assert offer["arch"] == 7
    assert offer["firmware"] == "efi-x64"
    assert record["facts"]["firmware"] == "efi-x64"
    assert "client 52:54:00:aa:bb:09 dhcp-offer" in lan.serve.log()


def test_reply_leaves_through_the_interface_as_broadcast(lan: Lan) -> None:
    # a socket not bound to port 68 must not see the offer: it went to 255.255.255.255:68
    with lan.client_ns.entered():
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("0.0.0.0", 0))
    other.settimeout(0.5)
    answer = exchange(lan, discover(0))
    assert answer is not None
    with pytest.raises(TimeoutError):
        other.recvfrom(4096)
    other.close()
