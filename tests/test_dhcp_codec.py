"""The DHCP codec against packets real firmware sent (tests/data/packets).

Pure: no root, no sockets. Hand-made packets only prove that netboot agrees with its own
idea of DHCP; these were captured from QEMU's iPXE ROM, OVMF's native PXE and iPXE EFI.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from netboot import config as config_mod
from netboot.boot import BootPolicy, PxeAnswer
from netboot.dhcp import packet, pxe
from netboot.dhcp.facts import facts_from_request
from netboot.dhcp.packet import ACK, DISCOVER, OFFER, REQUEST, MalformedPacket
from netboot.dhcp.prefilter import Glance, glance
from netboot.dhcp.proxy import ProxyDhcpServer
from netboot.records import ClientRecords
from testbed.packets import DHCP_SERVER, LEASED_IP, MAC, SMBIOS_UUID, load

SERVER_IP = "10.115.250.1"  # where netboot ran in the capture LAN
SCRIPT_URL = f"http://{SERVER_IP}/boot.ipxe"
# Option 97: type 0, then the SMBIOS UUID with its first three fields little-endian
GUID = b"\x00" + uuid.UUID(SMBIOS_UUID).bytes_le
IPXE_PARAMS = [1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, *range(128, 136), 175, 203]
OVMF_PARAMS = [1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54]
OVMF_PARAMS += [58, 59, 60, 66, 67, 97, *range(128, 136)]
HTTP_PARAMS = [*OVMF_PARAMS[:24], 235, 67, 97]  # OVMF's HTTP Boot asks for 235, not 66


@dataclass(frozen=True)
class Capture:
    file: str
    msg_type: int
    vendor_class: str
    arch: int
    ipxe: bool
    params: list[int]
    broadcast: bool = False
    ciaddr: str = "0.0.0.0"
    server_id: str | None = None
    requested_ip: str | None = None
    http: bool = False


CAPTURES = [
    Capture(
        "bios-ipxe-discover.bin", DISCOVER, "PXEClient:Arch:00000:UNDI:002001", 0, True,
        IPXE_PARAMS,
    ),
    Capture(
        "bios-ipxe-request.bin", REQUEST, "PXEClient:Arch:00000:UNDI:002001", 0, True,
        IPXE_PARAMS, server_id=DHCP_SERVER, requested_ip=LEASED_IP,
    ),
    Capture(
        "ovmf-pxe-discover.bin", DISCOVER, "PXEClient:Arch:00007:UNDI:003000", 7, False,
        OVMF_PARAMS, broadcast=True,
    ),
    Capture(
        "ovmf-pxe-request.bin", REQUEST, "PXEClient:Arch:00007:UNDI:003000", 7, False,
        OVMF_PARAMS, broadcast=True, server_id=DHCP_SERVER, requested_ip=LEASED_IP,
    ),
    Capture(
        "ovmf-pxe-request-4011.bin", REQUEST, "PXEClient:Arch:00007:UNDI:003000", 7, False,
        OVMF_PARAMS, ciaddr=LEASED_IP,
    ),
    Capture(
        "efi-ipxe-discover.bin", DISCOVER, "PXEClient:Arch:00007:UNDI:003010", 7, True,
        IPXE_PARAMS,
    ),
    Capture(
        "efi-ipxe-request.bin", REQUEST, "PXEClient:Arch:00007:UNDI:003010", 7, True,
        IPXE_PARAMS, server_id=DHCP_SERVER, requested_ip=LEASED_IP,
    ),
    Capture(
        "ovmf-http-discover.bin", DISCOVER, "HTTPClient:Arch:00016:UNDI:003000", 16, False,
        HTTP_PARAMS, broadcast=True, http=True,
    ),
]  # fmt: skip
by_file = pytest.mark.parametrize("capture", CAPTURES, ids=[c.file[:-4] for c in CAPTURES])


def options_layout(data: bytes) -> list[tuple[int, int, int]]:
    """(code, start, end) of each option up to and including the end option."""
    layout, i = [], 240
    while True:
        code = data[i]
        if code == 255:
            layout.append((255, i, i + 1))
            return layout
        if code == 0:
            i += 1
            continue
        end = i + 2 + data[i + 1]
        layout.append((code, i, end))
        i = end


def decode(data: bytes) -> packet.DhcpRequest | None:
    """glance then parse, as the servers do: None when either drops the packet."""
    if glance(data) is None:
        return None
    try:
        return packet.parse(data)
    except MalformedPacket:
        return None


@pytest.fixture
def policy(tmp_path: Path) -> BootPolicy:
    root = tmp_path / "root"
    (root / "ipxe").mkdir(parents=True)
    for name in ("undionly.kpxe", "snponly.efi", "ipxe.efi"):
        (root / "ipxe" / name).write_bytes(b"stand-in iPXE binary")
    config = config_mod.parse({"server": {"root": str(root)}}, "test")
    return BootPolicy(config, SERVER_IP, 80)


# -- decoding what firmware sent ---------------------------------------------------------


@by_file
def test_glance_sees_message_type_and_vendor_class(capture: Capture) -> None:
    """The byte pre-filter lets every real PXE request through, with the right type."""
    seen = glance(load(capture.file))
    assert seen == Glance(capture.msg_type, capture.vendor_class.encode())
    assert seen.is_pxe


@by_file
def test_parse_decodes_the_firmware_fields(capture: Capture) -> None:
    request = packet.parse(load(capture.file))
    assert (request.op, request.htype, request.hlen) == (1, 1, 6)
    assert request.mac == MAC
    assert request.msg_type == capture.msg_type
    assert request.vendor_class == capture.vendor_class
    assert request.arch == capture.arch
    assert request.is_pxe
    assert request.is_http_client is capture.http
    assert request.is_ipxe is capture.ipxe
    assert request.guid == GUID
    assert request.param_request_list == capture.params
    assert request.broadcast is capture.broadcast
    assert request.ciaddr == capture.ciaddr
    assert request.server_id == capture.server_id
    assert request.requested_ip == capture.requested_ip


def test_ipxe_announces_itself_twice() -> None:
    """iPXE sends user class "iPXE" and option 175; OVMF neither, nor a client id."""
    ipxe = packet.parse(load("efi-ipxe-discover.bin"))
    ovmf = packet.parse(load("ovmf-pxe-discover.bin"))
    assert ipxe.user_class == b"iPXE" and packet.OPT_IPXE_ENCAP in ipxe.options
    assert ipxe.client_id == b"\x01" + bytes.fromhex(MAC.replace(":", ""))
    assert ovmf.user_class == b"" and packet.OPT_IPXE_ENCAP not in ovmf.options
    assert ovmf.client_id is None


def test_arch_falls_back_to_the_vendor_class() -> None:
    """Without option 93 the arch comes from option 60's Arch:NNNNN field."""
    data = load("ovmf-pxe-discover.bin")
    _, start, end = next(o for o in options_layout(data) if o[0] == packet.OPT_ARCH)
    without_93 = data[:start] + data[end:]
    request = packet.parse(without_93)
    assert packet.OPT_ARCH not in request.options
    assert request.arch == 7


# -- what netboot answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "boot_file", "vendor_class", "vendor_43"),
    [
        ("bios-ipxe-discover.bin", SCRIPT_URL, b"PXEClient", pxe.PXE_SKIP_DISCOVERY_WITH_MENU),
        ("ovmf-pxe-discover.bin", "ipxe/snponly.efi", b"PXEClient", pxe.PXE_SKIP_DISCOVERY),
        ("efi-ipxe-discover.bin", SCRIPT_URL, b"PXEClient", pxe.PXE_SKIP_DISCOVERY_WITH_MENU),
        ("ovmf-http-discover.bin", f"http://{SERVER_IP}/ipxe/ipxe.efi", b"HTTPClient", None),
    ],
    ids=["bios-ipxe", "ovmf-pxe", "efi-ipxe", "ovmf-http"],
)
def test_offer_decodes_in_scapy(
    policy: BootPolicy, file: str, boot_file: str, vendor_class: bytes, vendor_43: bytes | None
) -> None:
    """The offer built for a real request carries what that firmware needs to boot."""
    request = packet.parse(load(file))
    answer = policy.pxe_answer(facts_from_request(request))
    assert isinstance(answer, PxeAnswer)
    assert answer.boot_file == boot_file
    data = packet.build_reply(
        request,
        OFFER,
        server_ip=SERVER_IP,
        siaddr=SERVER_IP,
        boot_file=answer.boot_file,
        options=pxe.pxe_options(request, answer),
    )
    assert len(data) >= packet.MIN_BOOTP_SIZE
    reply = BOOTP(data)
    assert reply.op == 2 and reply.xid == request.xid and reply.flags == request.flags
    assert bytes(reply.chaddr)[:6] == bytes.fromhex(MAC.replace(":", ""))
    assert (reply.yiaddr, reply.siaddr) == ("0.0.0.0", SERVER_IP)
    assert reply.file.rstrip(b"\x00") == boot_file.encode()
    options = dict(o for o in reply[DHCP].options if isinstance(o, tuple))
    assert options["message-type"] == OFFER
    assert options["server_id"] == SERVER_IP
    assert options["vendor_class_id"] == vendor_class  # HTTP Boot ignores an offer without it
    assert options["pxe_client_machine_identifier"] == GUID
    assert options.get("vendor_specific") == vendor_43
    # a URL goes in option 67 as well (UEFI HTTP Boot reads it there); a TFTP path not
    assert options.get("boot-file-name") == (boot_file.encode() if "://" in boot_file else None)


def test_efi_offer_has_no_boot_menu() -> None:
    """OVMF treats a menu (sub-option 9) as PXE 1.0 and starts boot-server discovery."""
    subopts, data = {}, pxe.PXE_SKIP_DISCOVERY
    i = 0
    while data[i] != 255:
        subopts[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    assert subopts == {6: b"\x08"}


@pytest.mark.parametrize(
    ("file", "on_4011", "reply_type", "destination"),
    [
        ("bios-ipxe-discover.bin", False, OFFER, ("255.255.255.255", 68)),
        ("bios-ipxe-request.bin", False, None, None),  # to the site's DHCP server
        ("ovmf-pxe-discover.bin", False, OFFER, ("255.255.255.255", 68)),
        ("ovmf-pxe-request.bin", False, None, None),
        ("ovmf-pxe-request-4011.bin", True, ACK, (LEASED_IP, 4011)),
        ("efi-ipxe-discover.bin", False, OFFER, ("255.255.255.255", 68)),
        ("efi-ipxe-request.bin", False, None, None),
        ("ovmf-pxe-discover.bin", True, None, None),  # a DISCOVER on 4011 is not PXE
        ("ovmf-http-discover.bin", False, OFFER, ("255.255.255.255", 68)),
    ],
)
def test_proxy_answers_each_capture(
    policy: BootPolicy,
    file: str,
    on_4011: bool,
    reply_type: int | None,
    destination: tuple[str, int] | None,
) -> None:
    """proxyDHCP's whole decision for each real packet, without a socket."""
    server = ProxyDhcpServer(policy, ClientRecords(), server_ip=SERVER_IP)
    source = (LEASED_IP, 4011) if on_4011 else ("0.0.0.0", 68)
    result = server.handle(load(file), source, on_4011)
    if reply_type is None:
        assert result is None
        return
    assert result is not None
    payload, sent_to = result
    assert sent_to == destination
    reply, options = packet.parse_reply(payload)
    assert options[packet.OPT_MSG_TYPE] == reply_type
    assert reply.xid == packet.parse(load(file)).xid


# -- malformed variants of real packets --------------------------------------------------


@by_file
def test_truncated_at_every_length(capture: Capture) -> None:
    """A cut packet is dropped unless the cut falls between two options after 53; never an
    exception other than MalformedPacket."""
    data = load(capture.file)
    layout = options_layout(data)
    msg_type_end = next(end for code, _, end in layout if code == packet.OPT_MSG_TYPE)
    boundaries = {end for _, _, end in layout if end >= msg_type_end}
    boundaries.add(len(data))  # padding after the end option
    for n in range(len(data)):
        cut = data[:n]
        request = decode(cut)
        if n in boundaries:
            assert request is not None, n
            assert request.msg_type == capture.msg_type
            assert request.mac == MAC
        else:
            assert request is None, n


@by_file
def test_bad_magic_cookie(capture: Capture) -> None:
    data = bytearray(load(capture.file))
    data[236:240] = b"\x63\x82\x53\x64"
    assert glance(bytes(data)) is None
    with pytest.raises(MalformedPacket):
        packet.parse(bytes(data))


@by_file
def test_reply_instead_of_request(capture: Capture) -> None:
    """op 2 (BOOTREPLY) is another server's answer, never ours to decode."""
    data = bytes([2]) + load(capture.file)[1:]
    assert glance(data) is None
    with pytest.raises(MalformedPacket):
        packet.parse(data)


@pytest.mark.parametrize("tail", [bytes([53, 1, 3]), b"\x01", b"junk"])
@by_file
def test_bytes_after_the_end_option_are_not_read(capture: Capture, tail: bytes) -> None:
    """RFC 2131 options stop at the end option (dnsmasq stops there too); scapy decodes on
    past it, where a message type would change what the packet is."""
    data = load(capture.file)
    body = data.rstrip(b"\0")
    assert body.endswith(b"\xff")
    request = packet.parse(body + tail + bytes(8))
    assert request.msg_type == packet.parse(data).msg_type
    assert request.options == packet.parse(data).options


@pytest.mark.parametrize("hlen", [0, 4, 7, 16, 17, 255])
@by_file
def test_ethernet_hlen_other_than_6(capture: Capture, hlen: int) -> None:
    data = bytearray(load(capture.file))
    data[2] = hlen
    assert glance(bytes(data)) is not None  # the pre-filter does not look at hlen
    with pytest.raises(MalformedPacket):
        packet.parse(bytes(data))


@pytest.mark.parametrize("code", [packet.OPT_MSG_TYPE, packet.OPT_VENDOR_CLASS, packet.OPT_GUID])
@by_file
def test_option_overrunning_the_end(capture: Capture, code: int) -> None:
    """An option whose length runs past the packet: glance stops there, parse refuses."""
    data = bytearray(load(capture.file))
    _, start, _ = next(o for o in options_layout(bytes(data)) if o[0] == code)
    data[start + 1] = len(data) - start - 1  # one byte more than what is left
    seen = glance(bytes(data))
    assert seen is not None
    if code == packet.OPT_MSG_TYPE:
        assert seen.msg_type == 0
    if code == packet.OPT_VENDOR_CLASS:
        assert seen.vendor_class == b""
    with pytest.raises(MalformedPacket):
        packet.parse(bytes(data))


@by_file
def test_random_corruption_only_raises_malformed(capture: Capture) -> None:
    """Flipped bytes never escape as anything but MalformedPacket, and whatever parse
    accepts, glance saw the same type and vendor class (the pre-filter does not lie)."""
    rng = random.Random(capture.file)
    original = load(capture.file)
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
        seen = glance(data)
        try:
            request = packet.parse(data)
        except MalformedPacket:
            continue
        assert seen is not None
        assert (seen.msg_type, seen.vendor_class) == (
            request.msg_type,
            request.options.get(packet.OPT_VENDOR_CLASS, b""),
        )


@pytest.mark.parametrize("htype", [6, 32])  # IEEE 802, InfiniBand
@pytest.mark.parametrize("hlen", [0, 4, 8, 16])
def test_proxy_drops_non_ethernet_short_hardware_address(
    policy: BootPolicy, caplog: pytest.LogCaptureFixture, htype: int, hlen: int
) -> None:
    """Issue 12: hlen != 6 passed parse and normalize_mac raised, a traceback per packet.
    Now it is dropped, counted by reason, and a thousand of them log at most one line."""
    data = bytearray(load("ovmf-pxe-discover.bin"))
    data[1], data[2] = htype, hlen
    server = ProxyDhcpServer(policy, ClientRecords(), server_ip=SERVER_IP)
    caplog.set_level(logging.DEBUG)
    for _ in range(1000):
        assert server.handle(bytes(data), ("0.0.0.0", 68), False) is None
    assert server.stats["malformed_hardware_address"] == 1000
    assert server.stats["malformed"] == 1000
    assert not server.stats["errors"]
    assert len(caplog.records) <= 1
    assert not any(record.exc_info for record in caplog.records)
