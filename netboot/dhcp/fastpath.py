"""proxyDHCP's hot path: a light decode, and answers patched from a template per client kind.

A boot storm is hundreds of PXE ROMs of a few kinds asking the same question; scapy decoding
and encoding each packet costs ~0.6 ms of CPU, which caps proxyDHCP at well under 2,000
answers a second on one core. Here an ordinary request is read with `struct` and an options
walk (`light_request`), and the answer for its kind (message type, arch, iPXE or not, HTTP
Boot or not, GUID length) is encoded once by the normal path (scapy, `packet.build_reply`)
and then copied with the client's xid, flags, ciaddr, chaddr and GUID written in
(`Templates`). The decision stays the policy's: a template stores its answer, and the cache
empties when the policy is replaced (SIGHUP) or a directory the answer looked in changes
(an iPXE binary or shim added, removed or renamed).

Anything unusual is left to scapy: an option this module does not know or of an odd length,
a repeated option, pad bytes between options, no end option, a relayed request (giaddr),
a hardware address length other than 6, INFORM, and clients whose answer depends on their
MAC (see `BootPolicy.answer_is_per_client`). tests/test_dhcp_fastpath.py proves that a
patched answer is byte for byte what the full path builds.
"""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass

from netboot.boot import BootPolicy, NoAnswer, PxeAnswer
from netboot.boot.pxe import answer_directories
from netboot.dhcp import packet
from netboot.dhcp.packet import DISCOVER, OPT_GUID, REQUEST, DhcpRequest
from netboot.dhcp.prefilter import MAGIC_COOKIE, OPTIONS_OFFSET

# op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr: the fixed header
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s")
NO_ADDRESS = bytes(4)
# the options a light decode reads, with the one length each must have (0: any but empty);
# their values mean the same to scapy's decoder, so the full path would decide the same
KNOWN_OPTIONS = {
    packet.OPT_MSG_TYPE: 1,
    57: 2,  # maximum message size
    packet.OPT_ARCH: 2,
    packet.OPT_NII: 3,
    packet.OPT_SERVER_ID: 4,
    packet.OPT_REQUESTED_IP: 4,
    packet.OPT_HOSTNAME: 0,
    packet.OPT_PARAM_LIST: 0,
    packet.OPT_VENDOR_CLASS: 0,
    packet.OPT_CLIENT_ID: 0,
    packet.OPT_USER_CLASS: 0,
    OPT_GUID: 0,
    packet.OPT_IPXE_ENCAP: 0,
}
ADDRESS_OPTIONS = (packet.OPT_SERVER_ID, packet.OPT_REQUESTED_IP)
MAX_TEMPLATES = 64  # kinds of client; a site has a handful, a hostile LAN cannot grow this
Kind = tuple[int, int, int | None, bool, bool, int]


@dataclass(frozen=True)
class LightRequest(DhcpRequest):
    """A request read without scapy; `raw` is the datagram the answer is patched from."""

    raw: bytes = b""


def light_request(data: bytes) -> LightRequest | None:
    """The request in `data` if it is an ordinary PXE DISCOVER or REQUEST from the local
    segment, else None (the caller decodes it with scapy, which also judges malformed)."""
    if len(data) <= OPTIONS_OFFSET or data[236:OPTIONS_OFFSET] != MAGIC_COOKIE:
        return None
    op, htype, hlen, _hops, xid, secs, flags, ciaddr, _yi, _si, giaddr, chaddr = HEADER.unpack_from(
        data
    )
    if op != 1 or hlen != 6 or giaddr != NO_ADDRESS:
        return None
    options: dict[int, object] = {}
    at, size = OPTIONS_OFFSET, len(data)
    while True:
        if at >= size:
            return None  # no end option: scapy's call
        code = data[at]
        if code == 255:
            if data[at + 1 :].strip(b"\0"):
                return None  # bytes after the end option: scapy reads them as options
            break
        if at + 1 >= size:
            return None
        length = data[at + 1]
        start, at = at + 2, at + 2 + length
        wanted = KNOWN_OPTIONS.get(code)
        if wanted is None or code in options or at > size or not length:
            return None
        if wanted and length != wanted:
            return None
        options[code] = data[start:at]
    msg_type = options.get(packet.OPT_MSG_TYPE, b"\0")[0]  # type: ignore[index]
    if msg_type not in (DISCOVER, REQUEST):
        return None
    options[packet.OPT_MSG_TYPE] = msg_type
    for code in ADDRESS_OPTIONS:
        if code in options:
            options[code] = socket.inet_ntoa(options[code])  # type: ignore[arg-type]
    return LightRequest(
        op, htype, hlen, xid, secs, flags, socket.inet_ntoa(ciaddr), "0.0.0.0", chaddr,
        options, raw=data,
    )  # fmt: skip


@dataclass(frozen=True)
class Template:
    """The answer for one kind of client, and its reply bytes (empty for a NoAnswer)."""

    answer: PxeAnswer | NoAnswer
    payload: bytes
    guid_at: int  # where option 97's value starts in `payload`; -1: no option 97

    def reply_for(self, request: LightRequest) -> bytes:
        """`payload` with this client's xid, flags, ciaddr, chaddr and GUID."""
        out = bytearray(self.payload)
        raw = request.raw
        out[4:8] = raw[4:8]  # xid
        out[10:16] = raw[10:16]  # flags, ciaddr
        out[28:44] = raw[28:44]  # chaddr
        guid = request.guid
        if guid is not None:
            out[self.guid_at : self.guid_at + len(guid)] = guid
        return bytes(out)


def kind_of(request: DhcpRequest) -> Kind:
    """What a proxy answer's bytes depend on besides the fields `reply_for` writes."""
    guid = request.guid
    return (
        request.msg_type,
        request.htype,
        request.arch,
        request.is_ipxe,
        request.is_http_client,
        -1 if guid is None else len(guid),
    )


def option_value_at(payload: bytes, wanted: int) -> int:
    """Offset of option `wanted`'s value in a reply we built, -1 if it has none."""
    at = OPTIONS_OFFSET
    while at + 1 < len(payload) and payload[at] != 255:
        if payload[at] == 0:
            at += 1
            continue
        if payload[at] == wanted:
            return at + 2
        at += 2 + payload[at + 1]
    return -1


class Templates:
    """The template cache of one proxy server (`enabled=False`: every packet takes the
    full path, as the equivalence tests compare)."""

    def __init__(self, stats: Counter[str], *, enabled: bool = True) -> None:
        self.stats = stats
        self.enabled = enabled
        self._by_kind: dict[Kind, Template] = {}
        self._policy: BootPolicy | None = None
        self._directories: list[str] = []
        self._stamp: tuple[tuple[int, int] | None, ...] = ()

    def usable(self, request: DhcpRequest, policy: BootPolicy) -> bool:
        """Whether this request may be answered from (and teach) the cache."""
        return (
            self.enabled
            and isinstance(request, LightRequest)
            and not policy.answer_is_per_client(request.mac)
        )

    def get(self, request: DhcpRequest, policy: BootPolicy) -> Template | None:
        """The template for this request's kind, after dropping every template an answer
        may no longer match (a new policy, a changed iPXE or shim directory)."""
        if policy is not self._policy:  # every client here has the site's loader
            loader = policy.loader(request.mac)
            self._directories = answer_directories(policy.config.tftp_root, loader)
        stamp = _directory_stamp(self._directories)
        if policy is not self._policy or stamp != self._stamp:
            if self._by_kind:
                self.stats["fastpath_flushed"] += 1
            self._by_kind.clear()
            self._policy, self._stamp = policy, stamp
        return self._by_kind.get(kind_of(request))

    def put(self, request: LightRequest, answer: PxeAnswer | NoAnswer, payload: bytes) -> None:
        """Keep the answer just worked out for this request, once scapy reads the request
        the same way and patching the answer back gives the same bytes (else it is not
        kept: counted as `fastpath_refused`). Costs a scapy decode, once per kind."""
        guid_at = option_value_at(payload, OPT_GUID) if payload else -1
        template = Template(answer, payload, guid_at)
        patches_back = not payload or (
            (request.guid is None or guid_at >= 0) and template.reply_for(request) == payload
        )
        if not patches_back or not _scapy_agrees(request):
            self.stats["fastpath_refused"] += 1
            return
        if len(self._by_kind) >= MAX_TEMPLATES:
            self._by_kind.pop(next(iter(self._by_kind)))
        self._by_kind[kind_of(request)] = template


def _scapy_agrees(request: LightRequest) -> bool:
    """Whether scapy's decode of the datagram gives the same facts the answer rests on."""
    try:
        decoded = packet.parse(request.raw)
    except packet.MalformedPacket:
        return False
    return all(
        getattr(decoded, name) == getattr(request, name)
        for name in ("mac", "chaddr", "xid", "flags", "ciaddr", "giaddr", "guid", "hostname",
                     "requested_ip", "server_id", "vendor_class")
    ) and kind_of(decoded) == kind_of(request)  # fmt: skip


def _directory_stamp(directories: list[str]) -> tuple[tuple[int, int] | None, ...]:
    """mtime and inode of each directory (None: missing): adding, removing or renaming a
    file in one changes its mtime, replacing the directory changes its inode."""
    stamp: list[tuple[int, int] | None] = []
    for directory in directories:
        try:
            found = os.stat(directory)
        except OSError:
            stamp.append(None)
        else:
            stamp.append((found.st_mtime_ns, found.st_ino))
    return tuple(stamp)
