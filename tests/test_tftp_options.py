"""TFTP option negotiation (RFC 2347/2348/2349/7440) and RRQ decoding, without sockets.

The RRQs OVMF sent in a real boot (tests/data/packets) come first: a tsize probe it aborts
once it has the size, then the real request.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tftpy.TftpPacketTypes import TftpPacketOACK

from netboot import tftp
from netboot.tftp import MAX_BLKSIZE, TftpServer, negotiate
from testbed.packets import load

SNPONLY_SIZE = 173792  # Debian's snponly.efi, the file OVMF fetched in the capture
ETHERNET_MAX_BLKSIZE = 1500 - 32  # what serve passes for MTU 1500: IP 20 + UDP 8 + TFTP 4


def rrq(data: bytes) -> tftp.ReadRequest:
    """Decode an RRQ the way the server does (netboot.tftp.wire)."""
    return tftp.parse_rrq(data)


def test_ovmf_tsize_probe() -> None:
    """OVMF first asks for tsize with blksize 1468 and windowsize 4; all are granted."""
    request = rrq(load("ovmf-tftp-rrq-tsize.bin"))
    assert (request.filename, request.mode) == ("ipxe/snponly.efi", "octet")
    assert request.options == {"tsize": "0", "blksize": "1468", "windowsize": "4"}
    result = negotiate(request.options, SNPONLY_SIZE, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert (result.blksize, result.windowsize, result.timeout) == (1468, 4, 2.0)
    assert result.acknowledged == {"tsize": str(SNPONLY_SIZE), "blksize": "1468", "windowsize": "4"}


def test_ovmf_transfer_request() -> None:
    """The second RRQ drops tsize: the OACK must not carry it either."""
    request = rrq(load("ovmf-tftp-rrq.bin"))
    assert request.options == {"blksize": "1468", "windowsize": "4"}
    result = negotiate(request.options, SNPONLY_SIZE, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert result.acknowledged == {"blksize": "1468", "windowsize": "4"}


def test_ovmf_blksize_clamped_to_a_smaller_link() -> None:
    """On a link with MTU 1400, OVMF's 1468 would fragment: the OACK says 1368."""
    request = rrq(load("ovmf-tftp-rrq.bin"))
    result = negotiate(request.options, SNPONLY_SIZE, max_blksize=1400 - 32, timeout=2.0)
    assert result.blksize == 1368
    assert result.acknowledged["blksize"] == "1368"


def test_oack_round_trips_through_tftpy() -> None:
    """The OACK bytes decode to exactly the acknowledged options."""
    result = negotiate(
        rrq(load("ovmf-tftp-rrq-tsize.bin")).options,
        SNPONLY_SIZE,
        max_blksize=ETHERNET_MAX_BLKSIZE,
        timeout=2.0,
    )
    oack = tftp._codec.parse(tftp.oack_packet(result.acknowledged))
    assert isinstance(oack, TftpPacketOACK)
    assert oack.options == result.acknowledged


@pytest.mark.parametrize(
    ("requested", "blksize", "acknowledged"),
    [
        ({"blksize": "8"}, 8, {"blksize": "8"}),  # RFC 2348 minimum
        ({"blksize": "7"}, 512, {}),  # below it: ignored, not clamped up
        ({"blksize": "0"}, 512, {}),
        ({"blksize": "-1468"}, 512, {}),
        ({"blksize": "1468"}, 1468, {"blksize": "1468"}),
        ({"blksize": "9000"}, 1468, {"blksize": "1468"}),  # clamped to the link
        ({"blksize": "99999"}, 1468, {"blksize": "1468"}),
        ({"blksize": "big"}, 512, {}),
        ({"blksize": ""}, 512, {}),
        ({"BlkSize": "1024"}, 1024, {"blksize": "1024"}),  # option names are case-blind
    ],
)
def test_blksize(requested: dict[str, str], blksize: int, acknowledged: dict[str, str]) -> None:
    result = negotiate(requested, 1000, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert result.blksize == blksize
    assert result.acknowledged == acknowledged


def test_blksize_never_above_the_rfc_maximum() -> None:
    """Even with no link limit, 65464 is the largest block RFC 2348 allows."""
    result = negotiate({"blksize": "65535"}, 1000, max_blksize=10**6, timeout=2.0)
    assert result.blksize == MAX_BLKSIZE == 65464


@pytest.mark.parametrize(
    ("requested", "size", "acknowledged"),
    [
        ({"tsize": "0"}, 4096, {"tsize": "4096"}),
        ({"tsize": "0"}, 0, {"tsize": "0"}),  # an empty file still has a size
        ({"tsize": "17"}, 4096, {"tsize": "4096"}),  # an RRQ's value is a placeholder
        ({"tsize": "-1"}, 4096, {}),
        ({"tsize": "0"}, None, {}),  # netascii: the size on the wire is unknown
    ],
)
def test_tsize(requested: dict[str, str], size: int | None, acknowledged: dict[str, str]) -> None:
    result = negotiate(requested, size, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert result.acknowledged == acknowledged


@pytest.mark.parametrize(
    ("value", "timeout", "acknowledged"),
    [("1", 1.0, True), ("255", 255.0, True), ("0", 2.0, False), ("256", 2.0, False)],
)
def test_timeout(value: str, timeout: float, acknowledged: bool) -> None:
    """RFC 2349: 1..255 seconds, else the server keeps its own."""
    result = negotiate({"timeout": value}, 1, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert result.timeout == timeout
    assert result.acknowledged == ({"timeout": value} if acknowledged else {})


@pytest.mark.parametrize(
    ("value", "windowsize", "acknowledged"),
    [("1", 1, "1"), ("4", 4, "4"), ("64", 64, "64"), ("65535", 64, "64"), ("0", 1, None)],
)
def test_windowsize(value: str, windowsize: int, acknowledged: str | None) -> None:
    """RFC 7440 allows up to 65535; netboot caps the burst at 64 and says so in the OACK."""
    result = negotiate({"windowsize": value}, 1, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert result.windowsize == windowsize
    assert result.acknowledged.get("windowsize") == acknowledged


def test_unknown_options_are_ignored() -> None:
    """multicast (RFC 2090) and vendor options get no OACK entry; known ones still do."""
    requested = {"multicast": "", "rollover": "0", "x-vendor": "1", "blksize": "1024"}
    result = negotiate(requested, 1, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert result.acknowledged == {"blksize": "1024"}


def test_no_options_means_no_oack() -> None:
    """An RFC 1350 client gets DATA 1 straight away, with the defaults."""
    result = negotiate({}, 1, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=3.0)
    assert (result.blksize, result.windowsize, result.timeout) == (512, 1, 3.0)
    assert result.acknowledged == {}


def test_all_options_together_whatever_their_case() -> None:
    asked = {"BLKSIZE": "1468", "TSize": "0", "Timeout": "3", "windowSize": "4", "x": "1"}
    result = negotiate(asked, 74213, max_blksize=ETHERNET_MAX_BLKSIZE, timeout=2.0)
    assert result.acknowledged == {
        "blksize": "1468",
        "tsize": "74213",
        "timeout": "3",
        "windowsize": "4",
    }
    assert (result.blksize, result.timeout, result.windowsize) == (1468, 3.0, 4)


@pytest.mark.parametrize(
    ("configured", "effective"), [(1468, 1468), (10**6, MAX_BLKSIZE), (1, 8), (-5, 8)]
)
def test_server_blksize_cap_is_kept_in_range(
    tmp_path: Path, configured: int, effective: int
) -> None:
    """The MTU-derived cap given to the server is itself held to RFC 2348's range."""
    assert TftpServer(tmp_path, max_blksize=configured).max_blksize == effective


# -- malformed requests are dropped, never raised ------------------------------------------

MALFORMED_RRQS = {
    "empty": b"",
    "one byte": b"\x00",
    "opcode only": b"\x00\x01",
    "no mode": b"\x00\x01ipxe/snponly.efi",
    "unterminated mode": b"\x00\x01ipxe/snponly.efi\x00octet",
    "empty filename": b"\x00\x01\x00octet\x00",
    "opcode 0": b"\x00\x00f\x00octet\x00",
    "opcode 9": b"\x00\x09f\x00octet\x00",
    "DATA to the listener": b"\x00\x03\x00\x01data",
    "ACK to the listener": b"\x00\x04\x00\x01",
}


@pytest.mark.parametrize("data", MALFORMED_RRQS.values(), ids=MALFORMED_RRQS.keys())
def test_malformed_request_is_counted_and_dropped(tmp_path: Path, data: bytes) -> None:
    """Junk on port 69 costs a counter: no exception, no transfer, no reply (the listener
    is not started, so any attempt to answer or start a transfer would raise)."""
    server = TftpServer(tmp_path)
    server._on_request(data, ("10.0.0.5", 1024))
    assert server.stats["malformed"] == 1
    reasons = [key for key in server.stats if key.startswith("malformed_")]
    assert len(reasons) == 1 and server.stats[reasons[0]] == 1
    assert not server._transfers and not server._starting


# RFC 2347: a server ignores options it does not take; tftpy's decoder rejected these
# RRQs and the client got silence (issue 12: 9,686 of 25,126 option cases).
TOLERATED_RRQS = {
    "option without value": (b"\x00\x01f\x00octet\x00blksize\x00", "f", {}),
    "unterminated value": (b"\x00\x01f\x00octet\x00blksize\x001468", "f", {}),
    "empty option name": (b"\x00\x01f\x00octet\x00\x00", "f", {}),
    "RFC 2090 multicast, empty value": (
        b"\x00\x01f\x00octet\x00multicast\x00\x00blksize\x001468\x00",
        "f",
        {"blksize": "1468"},
    ),
    "upper-case, repeated": (
        b"\x00\x01f\x00OCTET\x00BlkSize\x00512\x00blksize\x001468\x00",
        "f",
        {"blksize": "512"},
    ),
    "non-ascii name": (b"\x00\x01f\xff\x00octet\x00", "f\udcff", {}),
    "utf-8 name": (b"\x00\x01caf\xc3\xa9\x00octet\x00", "caf\u00e9", {}),
}


@pytest.mark.parametrize(
    ("data", "name", "options"), TOLERATED_RRQS.values(), ids=TOLERATED_RRQS.keys()
)
def test_odd_but_valid_request_is_decoded(data: bytes, name: str, options: dict) -> None:
    request = tftp.parse_rrq(data)
    assert (request.filename, request.mode, request.options) == (name, "octet", options)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x02upload\x00octet\x00", "write request"),
        (b"\x00\x01ipxe/snponly.efi\x00mail\x00", "mode 'mail'"),
    ],
)
def test_refused_requests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes, reason: str
) -> None:
    """A WRQ and an unknown mode are refused (an ERROR when listening), not malformed."""
    server = TftpServer(tmp_path)
    with caplog.at_level(logging.INFO, logger="netboot.tftp"):
        server._on_request(data, ("10.0.0.5", 1024))
    assert caplog.records[-1].getMessage().endswith(reason)
    assert server.stats["refused"] == 1 and server.stats["malformed"] == 0
    assert not server._transfers and not server._starting
