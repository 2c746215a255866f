"""Property tests (hypothesis): what hostile input can do to the pure parts of the server.

For any bytes or strings: the DHCP pre-filter and codec raise nothing but MalformedPacket,
and a packet the codec accepts never makes the proxy raise; the boot policy answers any
ClientFacts; TFTP option negotiation stays within the RFCs' ranges and RRQ decoding raises
nothing but MalformedRequest; a confined path never leaves its root. Runs are kept short
(modest max_examples, no deadline) so the fast suite stays fast; pure, no root.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netboot import config as config_mod
from netboot.boot import BootPolicy, ClientFacts, NoAnswer, PxeAnswer
from netboot.dhcp import packet
from netboot.dhcp.prefilter import glance
from netboot.dhcp.proxy import ProxyDhcpServer
from netboot.paths import UnsafePath, confine
from netboot.records import ClientRecords
from netboot.tftp import options as tftp_options
from netboot.tftp.wire import MalformedRequest, parse_rrq
from testbed.packets import load

SHORT = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAPTURED = [
    load(name)
    for name in (
        "bios-ipxe-discover.bin",
        "ovmf-pxe-discover.bin",
        "ovmf-pxe-request.bin",
        "efi-ipxe-request.bin",
        "ovmf-http-discover.bin",
    )
]
SERVER_IP = "10.115.250.1"


def make_policy() -> BootPolicy:
    root = Path(tempfile.mkdtemp(prefix="netboot-props-"))
    (root / "ipxe").mkdir()
    for name in ("undionly.kpxe", "snponly.efi", "ipxe.efi"):
        (root / "ipxe" / name).write_bytes(b"stand-in iPXE binary")
    config = config_mod.parse({"server": {"root": str(root)}}, "test")
    return BootPolicy(config, SERVER_IP, 80)


POLICY = make_policy()


@st.composite
def mutated_captures(draw: st.DrawFn) -> bytes:
    """A real firmware packet with some bytes overwritten, cut or extended: most of these
    get past the pre-filter, where random bytes would not."""
    data = bytearray(draw(st.sampled_from(CAPTURED)))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(236, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


dhcp_bytes = st.one_of(st.binary(max_size=600), mutated_captures())


@SHORT
@given(dhcp_bytes)
def test_glance_and_parse_raise_nothing_but_malformed(data: bytes) -> None:
    glance(data)
    try:
        packet.parse(data)
    except packet.MalformedPacket:
        pass


@SHORT
@given(mutated_captures(), st.booleans())
def test_proxy_never_raises_on_what_parse_accepts(data: bytes, on_4011: bool) -> None:
    server = ProxyDhcpServer(POLICY, ClientRecords(), server_ip=SERVER_IP)
    server.handle(data, ("0.0.0.0", 68), on_4011)
    assert not server.stats["errors"]


macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
client_text = st.text(max_size=300)
facts = st.builds(
    ClientFacts,
    mac=macs,
    arch=st.none() | st.integers(0, 0xFFFF),
    ipxe=st.booleans(),
    http_client=st.booleans(),
    relay=st.none() | st.ip_addresses(v=4).map(str),
    platform=st.sampled_from(["", "pcbios", "efi"]) | client_text,
    buildarch=st.sampled_from(["", "i386", "x86_64", "arm64"]) | client_text,
    manufacturer=client_text,
    serial=client_text,
)


@SHORT
@given(mutated_captures(), st.booleans())
def test_template_cache_answers_like_the_full_path(data: bytes, on_4011: bool) -> None:
    """Whatever a mutated capture looks like, the server with the template cache (warmed by
    the capture it came from, then asked twice) answers it as the one without does, and
    counts it the same way (dropped as malformed or not)."""
    fast = ProxyDhcpServer(POLICY, ClientRecords(), server_ip=SERVER_IP)
    full = ProxyDhcpServer(POLICY, ClientRecords(), server_ip=SERVER_IP, fast_path=False)
    source = ("10.115.250.177", 4011) if on_4011 else ("0.0.0.0", 68)
    for original in CAPTURED:
        fast.handle(original, source, on_4011)
        full.handle(original, source, on_4011)
    expected = full.handle(data, source, on_4011)
    assert fast.handle(data, source, on_4011) == expected
    assert {k: v for k, v in fast.stats.items() if not k.startswith("fastpath")} == full.stats
    assert fast.handle(data, source, on_4011) == expected
    assert not fast.stats["fastpath_refused"]


@SHORT
@given(facts)
def test_boot_policy_answers_any_client(client: ClientFacts) -> None:
    answer = POLICY.pxe_answer(client)
    assert isinstance(answer, PxeAnswer | NoAnswer)


option_names = st.sampled_from(["blksize", "tsize", "timeout", "windowsize", "BlkSize", "x"])
option_values = st.one_of(st.integers(-(2**40), 2**40).map(str), st.text(max_size=12))


@SHORT
@given(
    st.dictionaries(option_names | st.text(max_size=10), option_values, max_size=6),
    st.none() | st.integers(0, 2**40),
    st.integers(1, 70000),
)
def test_negotiation_stays_within_the_rfcs(
    requested: dict[str, str], size: int | None, max_blksize: int
) -> None:
    result = tftp_options.negotiate(requested, size, max_blksize=max_blksize, timeout=2.0)
    assert tftp_options.MIN_BLKSIZE <= result.blksize <= tftp_options.MAX_BLKSIZE
    limit = max(max_blksize, tftp_options.MIN_BLKSIZE)
    assert result.blksize == tftp_options.DEFAULT_BLKSIZE or result.blksize <= limit
    assert 1 <= result.windowsize <= tftp_options.MAX_WINDOWSIZE
    assert tftp_options.MIN_TIMEOUT <= result.timeout <= tftp_options.MAX_TIMEOUT
    assert set(result.acknowledged) <= {"blksize", "tsize", "timeout", "windowsize"}
    if size is None:
        assert "tsize" not in result.acknowledged


@SHORT
@given(st.binary(max_size=200).map(lambda b: b"\x00\x01" + b) | st.binary(max_size=200))
def test_rrq_decoding_raises_nothing_but_malformed(data: bytes) -> None:
    try:
        request = parse_rrq(data)
    except MalformedRequest:
        return
    assert request.filename and "\x00" not in request.filename
    assert all(key and value for key, value in request.options.items())


no_nul = st.binary(min_size=1, max_size=40).filter(lambda b: b"\x00" not in b)


@SHORT
@given(
    no_nul,
    st.sampled_from([b"octet", b"netascii", b"OCTET"]),
    st.lists(st.tuples(no_nul, no_nul), max_size=5),
)
def test_rrq_round_trips(name: bytes, mode: bytes, pairs: list[tuple[bytes, bytes]]) -> None:
    data = b"\x00\x01" + name + b"\x00" + mode + b"\x00"
    data += b"".join(key + b"\x00" + value + b"\x00" for key, value in pairs)
    request = parse_rrq(data)
    assert os.fsencode(request.filename) == name
    assert request.mode == mode.decode().lower()
    first: dict[str, str] = {}
    for key, value in pairs[: parse_rrq.__globals__["MAX_OPTIONS"]]:
        first.setdefault(key.decode("ascii", "replace").lower(), value.decode("ascii", "replace"))
    assert request.options == first


ROOT = Path(tempfile.mkdtemp(prefix="netboot-confine-"))
(ROOT / "served" / "ipxe").mkdir(parents=True)
(ROOT / "outside").mkdir()
(ROOT / "served" / "up").symlink_to(ROOT / "outside")
(ROOT / "served" / "ipxe" / "loop").symlink_to("../..")
path_parts = st.sampled_from(["..", ".", "", "up", "ipxe", "loop", "\\..", "%2e%2e", "/"])
any_text = st.text(st.characters(exclude_categories=()), max_size=60)  # lone surrogates too
paths = st.one_of(any_text, st.lists(path_parts | st.text(max_size=5)).map("/".join))


@SHORT
@given(paths)
def test_confine_never_escapes_the_root(requested: str) -> None:
    served = os.path.realpath(ROOT / "served")
    try:
        result = confine(ROOT / "served", requested)
    except UnsafePath:
        return
    assert str(result) == served or str(result).startswith(served + os.sep)
