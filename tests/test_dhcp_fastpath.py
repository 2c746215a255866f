"""proxyDHCP's hot path (netboot/dhcp/fastpath.py): a patched template is byte for byte the
full path's answer, and anything unusual takes the full path.

Every comparison runs two servers on the same policy: one with the template cache, one
without (`fast_path=False`, every packet decoded and encoded by scapy). The packets are the
firmware captures in tests/data/packets and variants of them (other MACs, xids, GUIDs,
flags, ciaddr). The last test does the same over real sockets against `netboot serve`.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from netboot import config as config_mod
from netboot.boot import BootPolicy
from netboot.boot.api import ApiBoot
from netboot.dhcp import fastpath
from netboot.dhcp.proxy import ProxyDhcpServer
from netboot.records import ClientRecords
from testbed.lan import CLIENT_IP as LAN_CLIENT_IP
from testbed.lan import SERVER_IP as LAN_SERVER_IP
from testbed.lan import Lan
from testbed.packets import MAC, load

SERVER_IP = "10.115.250.1"
CLIENT = ("0.0.0.0", 68)
AT_4011 = ("10.115.250.177", 4011)
# (capture, sent to 4011?) pairs proxyDHCP answers
ANSWERED = [
    ("bios-ipxe-discover.bin", False),
    ("efi-ipxe-discover.bin", False),
    ("ovmf-pxe-discover.bin", False),
    ("ovmf-http-discover.bin", False),
    ("ovmf-pxe-request-4011.bin", True),
    ("bios-ipxe-request.bin", True),
    ("efi-ipxe-request.bin", True),
    ("ovmf-pxe-request.bin", True),
]
MACS = ["52:54:00:c0:ff:ee", "52:54:00:00:00:01", "a0:36:9f:12:34:56"]
XIDS = [0x00000001, 0xDEADBEEF, 0x7FFFFFFF]
FLAGS = [0x0000, 0x8000]
CIADDRS = ["0.0.0.0", "10.115.250.23"]


def make_policy(root: Path, boot: dict | None = None, **clients: dict) -> BootPolicy:
    (root / "ipxe").mkdir(parents=True, exist_ok=True)
    for name in ("undionly.kpxe", "snponly.efi", "ipxe.efi"):
        (root / "ipxe" / name).write_bytes(b"stand-in iPXE binary")
    table = {"server": {"root": str(root)}, "boot": boot or {}, "clients": clients}
    return BootPolicy(config_mod.parse(table, "test"), SERVER_IP, 80)


@pytest.fixture
def policy(tmp_path: Path) -> BootPolicy:
    return make_policy(tmp_path / "root")


def servers(policy: BootPolicy) -> tuple[ProxyDhcpServer, ProxyDhcpServer]:
    """(with the template cache, without it) on the same policy."""
    fast = ProxyDhcpServer(policy, ClientRecords(), server_ip=SERVER_IP)
    full = ProxyDhcpServer(policy, ClientRecords(), server_ip=SERVER_IP, fast_path=False)
    return fast, full


def option_at(data: bytes, code: int) -> tuple[int, int]:
    """(value offset, length) of option `code` in a request; (-1, 0) when absent."""
    at = 240
    while at < len(data) and data[at] != 255:
        if data[at] == 0:
            at += 1
            continue
        if data[at] == code:
            return at + 2, data[at + 1]
        at += 2 + data[at + 1]
    return -1, 0


def variant(
    data: bytes, *, mac: str, xid: int, flags: int, ciaddr: str = "", guid_seed: int = 0
) -> bytes:
    """A capture as another client of its kind would send it."""
    out = bytearray(data)
    out[4:8] = xid.to_bytes(4, "big")
    out[10:12] = flags.to_bytes(2, "big")
    if ciaddr:
        out[12:16] = socket.inet_aton(ciaddr)
    out[28:34] = bytes.fromhex(mac.replace(":", ""))
    guid_at, length = option_at(data, 97)
    if guid_at >= 0 and guid_seed:
        out[guid_at + 1 : guid_at + length] = bytes(
            (guid_seed + i) % 256 for i in range(length - 1)
        )
    return bytes(out)


def no_fastpath_keys(stats: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in stats.items() if not k.startswith("fastpath")})


def events(records: ClientRecords, mac: str) -> list[dict]:
    found = records.as_dict(mac)
    assert found is not None
    return [{k: v for k, v in e.items() if k != "time"} for e in found["events"]]


@pytest.mark.parametrize(("file", "on_4011"), ANSWERED)
def test_patched_answers_equal_the_full_path(policy: BootPolicy, file: str, on_4011: bool) -> None:
    """Every variant of every answered capture: same bytes, same destination, same client
    record, same counters; and all but the first were patched templates."""
    fast, full = servers(policy)
    source = AT_4011 if on_4011 else CLIENT
    variants = [
        variant(load(file), mac=m, xid=x, flags=f, ciaddr=c, guid_seed=seed)
        for seed, (m, x, f, c) in enumerate(itertools.product(MACS, XIDS, FLAGS, CIADDRS))
    ]
    for data in variants:
        expected = full.handle(data, source, on_4011)
        assert expected is not None
        assert fast.handle(data, source, on_4011) == expected
    assert fast.stats["fastpath_hits"] == len(variants) - 1
    assert not fast.stats["fastpath_refused"]
    assert no_fastpath_keys(fast.stats) == full.stats
    for mac in MACS:
        assert events(fast.records, mac) == events(full.records, mac)
        assert fast.records.as_dict(mac)["ip"] == full.records.as_dict(mac)["ip"]


@pytest.mark.parametrize("name", [b"lab-pc-042", b"caf\xc3\xa9\n\x1b[31m"])
def test_hostname_is_recorded_as_the_full_path_does(policy: BootPolicy, name: bytes) -> None:
    fast, full = servers(policy)
    capture = load("ovmf-pxe-discover.bin")
    end = capture.index(255, 240)
    named = capture[:end] + bytes([12, len(name)]) + name + capture[end:]
    for data in (capture, named):
        assert fast.handle(data, CLIENT, False) == full.handle(data, CLIENT, False)
    assert fast.stats["fastpath_hits"] == 1
    assert events(fast.records, MAC) == events(full.records, MAC)
    assert events(fast.records, MAC)[-1]["hostname"]


@pytest.mark.parametrize(
    "file", ["bios-ipxe-request.bin", "efi-ipxe-request.bin", "ovmf-pxe-request.bin"]
)
def test_request_to_the_site_server_is_learned_and_ignored_without_scapy(
    policy: BootPolicy, file: str
) -> None:
    fast, full = servers(policy)
    assert fast._light(load(file)) is not None  # read without scapy
    assert fast.handle(load(file), CLIENT, False) is None
    assert full.handle(load(file), CLIENT, False) is None
    assert fast.stats == full.stats
    assert fast.records.as_dict(MAC)["ip"] == full.records.as_dict(MAC)["ip"] == "10.115.250.177"


def relayed(data: bytes, giaddr: str = "10.20.0.1") -> bytes:
    """The packet as a relay agent forwards it: hops 1, giaddr, option 82 before the end."""
    out = bytearray(data)
    out[3] = 1
    out[24:28] = socket.inet_aton(giaddr)
    end = out.index(255, 240)
    agent = bytes([1, 4]) + b"eth3"
    return bytes(out[:end] + bytes([82, len(agent)]) + agent + out[end:])


def with_unknown_option(data: bytes) -> bytes:
    end = data.index(255, 240)
    return data[:end] + bytes([224, 2, 1, 2]) + data[end:]


def truncated(data: bytes) -> bytes:
    return data[: data.index(255, 240) - 3]


def odd_hlen(data: bytes) -> bytes:
    return data[:2] + bytes([8]) + data[3:]


def after_the_end(data: bytes) -> bytes:
    """A message type after the end option (found by test_properties): scapy reads on past
    the end, so the byte-level reader leaves such a packet to the full path, which stops
    at the end as dnsmasq does."""
    body = data.rstrip(b"\0")
    assert body.endswith(b"\xff")
    return body + bytes([53, 1, 3]) + bytes(8)


UNUSUAL = {
    "relayed": relayed,
    "unknown option": with_unknown_option,
    "truncated": truncated,
    "hlen 8": odd_hlen,
    "options after the end": after_the_end,
}


@pytest.mark.parametrize("what", UNUSUAL)
@pytest.mark.parametrize(("file", "on_4011"), ANSWERED[:5])
def test_unusual_packets_take_the_full_path(
    policy: BootPolicy, what: str, file: str, on_4011: bool
) -> None:
    """With the kind's template in the cache, the unusual packet is still decoded by scapy:
    no hit, same answer (or the same drop, counted the same) as without the cache."""
    fast, full = servers(policy)
    source = AT_4011 if on_4011 else CLIENT
    fast.handle(load(file), source, on_4011)  # the kind's template is now cached
    full.handle(load(file), source, on_4011)
    data = UNUSUAL[what](load(file))
    assert fastpath.light_request(data) is None
    assert fast.handle(data, source, on_4011) == full.handle(data, source, on_4011)
    assert not fast.stats["fastpath_hits"]
    assert no_fastpath_keys(fast.stats) == full.stats
    if what == "hlen 8":  # a truncated one is scapy's call: answered or dropped, the same
        assert full.stats["malformed"] == 1


def test_a_client_with_its_own_section_takes_the_full_path(tmp_path: Path) -> None:
    own = "52:54:00:00:00:42"
    policy = make_policy(tmp_path / "root", **{own: {"loader": "grub"}})
    (tmp_path / "root" / "efi" / "x64").mkdir(parents=True)
    (tmp_path / "root" / "efi" / "x64" / "shimx64.efi").write_bytes(b"stand-in shim")
    fast, full = servers(policy)
    capture = load("ovmf-pxe-discover.bin")
    fast.handle(capture, CLIENT, False)  # the kind's template: snponly.efi
    mine = variant(capture, mac=own, xid=7, flags=0x8000)
    assert fast._light(mine) is None
    reply = fast.handle(mine, CLIENT, False)
    assert reply == full.handle(mine, CLIENT, False)
    assert reply is not None and b"efi/x64/shimx64.efi" in reply[0]
    assert not fast.stats["fastpath_hits"]


def test_api_mode_uses_templates_only_for_claimed_machines(tmp_path: Path) -> None:
    """API mode: a machine the API has not answered for is the full path's (it waits for
    the API); once the API claimed it, its answer is the kind's, from the template."""
    policy = make_policy(tmp_path / "root", {"api": "http://127.0.0.1:9/"})
    fast, full = servers(policy)
    capture = load("ovmf-pxe-discover.bin")
    assert policy.api is not None and policy.api.cached(MAC) is None
    assert fast._light(capture) is None
    claimed = ApiBoot("http://127.0.0.1:9/vmlinuz", (), "", "")
    policy.api._cache[MAC] = (time.monotonic() + 60, claimed)  # what a yes from the API leaves
    other = variant(capture, mac=MACS[1], xid=5, flags=0)
    policy.api._cache[MACS[1]] = (time.monotonic() + 60, claimed)
    for data in (capture, other):
        assert fast._light(data) is not None
        assert fast.handle(data, CLIENT, False) == full.handle(data, CLIENT, False)
    assert fast.stats["fastpath_hits"] == 1


def test_new_policy_and_changed_binaries_empty_the_cache(policy: BootPolicy) -> None:
    fast, full = servers(policy)
    arm64 = variant(load("ovmf-pxe-discover.bin"), mac=MACS[1], xid=9, flags=0)
    arm64 = arm64.replace(b"PXEClient:Arch:00007", b"PXEClient:Arch:00011")
    at, _ = option_at(arm64, 93)
    arm64 = arm64[:at] + b"\x00\x0b" + arm64[at + 2 :]
    for _ in range(2):  # no arm64 binary: no answer, from the template the second time
        assert fast.handle(arm64, CLIENT, False) is None
    assert fast.stats["fastpath_hits"] == 1
    binary = policy.config.tftp_root / "ipxe" / "snponly-arm64.efi"
    binary.write_bytes(b"stand-in arm64 iPXE")
    answered = fast.handle(arm64, CLIENT, False)
    assert answered is not None and answered == full.handle(arm64, CLIENT, False)
    assert fast.stats["fastpath_flushed"] == 1
    binary.unlink()
    assert fast.handle(arm64, CLIENT, False) is None
    fast.policy = BootPolicy(policy.config, SERVER_IP, 8080)  # what a SIGHUP reload does
    full.policy = fast.policy
    capture = load("ovmf-pxe-discover.bin")
    assert fast.handle(capture, CLIENT, False) == full.handle(capture, CLIENT, False)
    assert fast.stats["fastpath_flushed"] == 3


def test_loader_grub_watches_the_shim_directory(tmp_path: Path) -> None:
    policy = make_policy(tmp_path / "root", {"loader": "grub"})
    shim = tmp_path / "root" / "efi" / "x64" / "shimx64.efi"
    shim.parent.mkdir(parents=True)
    shim.write_bytes(b"stand-in shim")
    fast, full = servers(policy)
    capture = load("ovmf-pxe-discover.bin")
    for _ in range(2):
        reply = fast.handle(capture, CLIENT, False)
        assert reply is not None and b"efi/x64/shimx64.efi" in reply[0]
    assert fast.stats["fastpath_hits"] == 1
    shim.unlink()  # no shim: no answer (loader grub), at once
    assert fast.handle(capture, CLIENT, False) is None
    assert full.handle(capture, CLIENT, False) is None
    assert fast.stats["fastpath_flushed"] == 1


def test_the_cache_is_bounded(policy: BootPolicy) -> None:
    fast, _ = servers(policy)
    capture = load("ovmf-http-discover.bin")
    guid_at, _ = option_at(capture, 97)
    for length in range(1, 100):  # a GUID of every length: a kind each
        data = capture[: guid_at - 1] + bytes([length]) + bytes(length) + capture[guid_at + 17 :]
        fast.handle(data, CLIENT, False)
    assert len(fast.templates._by_kind) == fastpath.MAX_TEMPLATES


# -- over real sockets, against `netboot serve` -------------------------------------------


def answer_over_the_wire(lan: Lan, data: bytes, port: int, to: tuple[str, int]) -> bytes | None:
    """Send `data` from the client namespace; the reply with its xid that reaches `port`."""
    sock = lan.client_socket(port, timeout=2.0)
    try:
        sock.sendto(data, to)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                reply = sock.recv(4096)
            except TimeoutError:
                return None
            if reply[:1] == b"\x02" and reply[4:8] == data[4:8]:
                return reply
        return None
    finally:
        sock.close()


@pytest.mark.netns
def test_serve_answers_with_the_full_paths_bytes(lan: Lan) -> None:
    """`netboot serve` (template cache on) answers each capture's variants with exactly the
    bytes an in-process full path builds for the same root; a relayed one too, from scapy;
    its counters show one miss per kind and no hit for the relayed packet."""
    config = config_mod.parse({"server": {"root": str(lan.root)}}, "test")
    full = ProxyDhcpServer(
        BootPolicy(config, LAN_SERVER_IP, 80), ClientRecords(), server_ip=LAN_SERVER_IP,
        fast_path=False,
    )  # fmt: skip
    hits_before = lan.serve.api("/api/stats")["dhcp"].get("fastpath_hits", 0)
    sent = 0
    for (file, on_4011), mac in itertools.product(ANSWERED[:5], MACS[1:]):
        ciaddr = LAN_CLIENT_IP if on_4011 else ""
        data = variant(load(file), mac=mac, xid=0x5EED0000 + sent, flags=0, ciaddr=ciaddr,
                       guid_seed=sent + 1)  # fmt: skip
        expected = full.handle(data, (LAN_CLIENT_IP, 4011), on_4011)
        assert expected is not None
        to = (LAN_SERVER_IP, 4011) if on_4011 else ("255.255.255.255", 67)
        assert answer_over_the_wire(lan, data, 4011 if on_4011 else 68, to) == expected[0], file
        sent += 1
    # relayed from the client's own address: the answer goes to the relay's port 67
    relay = relayed(load("ovmf-pxe-discover.bin"), LAN_CLIENT_IP)
    expected = full.handle(relay, ("0.0.0.0", 68), False)
    assert expected is not None and expected[1] == (LAN_CLIENT_IP, 67)
    assert answer_over_the_wire(lan, relay, 67, ("255.255.255.255", 67)) == expected[0]
    stats = lan.serve.api("/api/stats")["dhcp"]
    assert stats["fastpath_hits"] - hits_before == sent - len(ANSWERED[:5])
    assert "fastpath_hits" in lan.curl("/metrics").stdout
