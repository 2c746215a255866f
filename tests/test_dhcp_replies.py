"""The full server's reply builders as pure functions: request in, bytes and destination out."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from scapy.layers.dhcp import BOOTP, DHCP

from netboot.boot import NoAnswer, PxeAnswer
from netboot.dhcp import packet
from netboot.dhcp.packet import ACK, NAK, OFFER, DhcpRequest, parse_reply
from netboot.dhcp.pool import Reservation
from netboot.dhcp.replies import Settings, boot_detail, config_options, lease_reply, nak

MAC = "52:54:00:12:34:56"
SERVER = "10.0.0.1"
SETTINGS = Settings(SERVER, IPv4Network("10.0.0.0/24"), 3600, "10.0.0.254", ("10.0.0.53",))
BIOS = PxeAnswer("ipxe/undionly.kpxe", "PXEClient", "bios", 0, False)


def request(
    msg: str = "discover", *, ciaddr: str = "0.0.0.0", giaddr: str = "0.0.0.0", pxe: bool = False
) -> DhcpRequest:
    options: list = [("message-type", msg)]
    if pxe:
        options += [
            ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"),
            ("pxe_client_architecture", b"\x00\x00"),
        ]
    chaddr = bytes.fromhex(MAC.replace(":", "")) + b"\0" * 10
    bootp = BOOTP(op=1, chaddr=chaddr, xid=0x42, ciaddr=ciaddr, giaddr=giaddr)
    return packet.parse(bytes(bootp / DHCP(options=[*options, "end"])))


def test_config_options_for_a_lease() -> None:
    options = dict(config_options(SETTINGS, None, lease=True))
    assert options == {
        "subnet_mask": "255.255.255.0",
        "broadcast_address": "10.0.0.255",
        "router": "10.0.0.254",
        "name_server": "10.0.0.53",
        "lease_time": 3600,
        "renewal_time": 1800,  # T1 = 1/2
        "rebinding_time": 3150,  # T2 = 7/8
    }


def test_config_options_without_a_lease_and_with_hostname_and_domain() -> None:
    settings = Settings(SERVER, IPv4Network("10.0.0.0/25"), 600, domain="lab.example")
    reservation = Reservation(MAC, IPv4Address("10.0.0.10"), "pc01")
    options = config_options(settings, reservation, lease=False)
    assert options == [
        ("subnet_mask", "255.255.255.128"),
        ("broadcast_address", "10.0.0.127"),
        ("domain", b"lab.example"),
        ("hostname", b"pc01"),
    ]


def test_config_options_list_every_dns_server() -> None:
    settings = Settings(SERVER, IPv4Network("10.0.0.0/24"), 60, dns=("10.0.0.2", "10.0.0.3"))
    assert ("name_server", "10.0.0.2", "10.0.0.3") in config_options(settings, None, lease=True)


def test_offer_is_broadcast_without_ciaddr_and_carries_the_address() -> None:
    options = config_options(SETTINGS, None, lease=True)
    payload, destination = lease_reply(
        SETTINGS, request(ciaddr="10.0.0.9"), OFFER, "10.0.0.100", options, None
    )
    bootp, decoded = parse_reply(payload)
    assert destination == ("10.0.0.9", 68)  # a client with an address gets it unicast
    assert bootp.yiaddr == "10.0.0.100" and bootp.ciaddr == "0.0.0.0"
    assert bootp.siaddr == "0.0.0.0" and bootp.file.rstrip(b"\0") == b""
    assert decoded[53] == OFFER and decoded[54] == SERVER and decoded[51] == 3600


def test_ack_echoes_ciaddr_and_goes_to_a_relay() -> None:
    payload, destination = lease_reply(
        SETTINGS,
        request("request", ciaddr="10.0.0.9", giaddr="10.0.0.250"),
        ACK,
        "10.0.0.9",
        [],
        None,
    )
    bootp, decoded = parse_reply(payload)
    assert destination == ("10.0.0.250", 67)
    assert bootp.ciaddr == "10.0.0.9" and decoded[53] == ACK


def test_pxe_client_gets_the_boot_answer_with_its_lease() -> None:
    options = config_options(SETTINGS, None, lease=True)
    payload, destination = lease_reply(
        SETTINGS, request(pxe=True), OFFER, "10.0.0.100", options, BIOS
    )
    bootp, decoded = parse_reply(payload)
    assert destination == ("255.255.255.255", 68)
    assert bootp.siaddr == SERVER
    assert bootp.file.rstrip(b"\0") == b"ipxe/undionly.kpxe"
    assert decoded[60] == b"PXEClient" and 43 in decoded and decoded[1] == "255.255.255.0"
    assert options == config_options(SETTINGS, None, lease=True)  # the caller's list untouched


def test_no_boot_answer_leaves_siaddr_and_file_empty() -> None:
    payload, _ = lease_reply(
        SETTINGS, request(pxe=True), OFFER, "10.0.0.100", [], NoAnswer("no binary")
    )
    bootp, decoded = parse_reply(payload)
    assert bootp.siaddr == "0.0.0.0" and 60 not in decoded


def test_boot_detail_for_the_client_record() -> None:
    assert boot_detail(BIOS) == {
        "boot_file": "ipxe/undionly.kpxe",
        "arch": 0,
        "firmware": "bios",
        "ipxe": False,
    }
    assert boot_detail(NoAnswer("why")) == {"boot_file": "", "no_boot": "why"}
    assert boot_detail(None) == {"boot_file": ""}


def test_nak_is_broadcast_with_the_reason() -> None:
    payload, destination = nak(SETTINGS, request("request", ciaddr="10.0.0.9"), "x" * 300)
    bootp, decoded = parse_reply(payload)
    assert destination == ("255.255.255.255", 68)
    assert decoded[53] == NAK and bootp.ciaddr == "0.0.0.0" and bootp.yiaddr == "0.0.0.0"
    assert decoded[56] == b"x" * 200


def test_nak_through_a_relay_sets_the_broadcast_bit() -> None:
    payload, destination = nak(SETTINGS, request("request", giaddr="10.0.0.250"), "wrong")
    bootp, _ = parse_reply(payload)
    assert destination == ("10.0.0.250", 67)
    assert bootp.flags & 0x8000
