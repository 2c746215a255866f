"""DHCP packets through scapy: decode a client's request, build our reply.

Only packets that passed the byte pre-filter get here. Decoding turns scapy's mixed option
names into a plain `{code: value}` map so the rest of netboot never sees scapy's naming.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {
    DISCOVER: "DISCOVER",
    OFFER: "OFFER",
    REQUEST: "REQUEST",
    DECLINE: "DECLINE",
    ACK: "ACK",
    NAK: "NAK",
    RELEASE: "RELEASE",
    INFORM: "INFORM",
}
BROADCAST_FLAG = 0x8000
MIN_BOOTP_SIZE = 300

# option codes used by name below
OPT_HOSTNAME = 12
OPT_REQUESTED_IP = 50
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_LIST = 55
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61
OPT_USER_CLASS = 77
OPT_ARCH = 93
OPT_NII = 94
OPT_GUID = 97
OPT_IPXE_ENCAP = 175


class MalformedPacket(ValueError):
    """A packet that passed the pre-filter but does not decode as a DHCP request; `reason`
    is a short fixed key (never client text) for the drop counters."""

    def __init__(self, message: str, reason: str = "undecodable") -> None:
        super().__init__(message)
        self.reason = reason


def _name_to_code(name: str | int) -> int | None:
    if isinstance(name, int):
        return name
    entry = DHCPRevOptions.get(name)
    return entry[0] if entry else None


@dataclass(frozen=True)
class DhcpRequest:
    """The parts of a client packet that netboot decides on."""

    op: int
    htype: int
    hlen: int
    xid: int
    secs: int
    flags: int
    ciaddr: str
    giaddr: str
    chaddr: bytes
    options: dict[int, Any] = field(default_factory=dict)

    @property
    def msg_type(self) -> int:
        value = self.options.get(OPT_MSG_TYPE, 0)
        return value if isinstance(value, int) else 0

    # mac, vendor_class, arch, user_class, is_ipxe: asked several times per packet
    @cached_property
    def mac(self) -> str:
        return ":".join(f"{b:02x}" for b in self.chaddr[: self.hlen or 6])

    @cached_property
    def vendor_class(self) -> str:
        return _text(self.options.get(OPT_VENDOR_CLASS, b""))

    @property
    def is_pxe(self) -> bool:
        return self.vendor_class.startswith(("PXEClient", "HTTPClient"))

    @property
    def is_http_client(self) -> bool:
        return self.vendor_class.startswith("HTTPClient")

    @cached_property
    def arch(self) -> int | None:
        """Client system architecture (RFC 4578 option 93), falling back to option 60's
        `Arch:NNNNN` field which some ROMs send without 93."""
        raw = self.options.get(OPT_ARCH)
        if isinstance(raw, bytes) and len(raw) >= 2:
            return int.from_bytes(raw[:2], "big")
        parts = self.vendor_class.split(":")
        if len(parts) >= 3 and parts[1] == "Arch" and parts[2].isdigit():
            return int(parts[2])
        return None

    @cached_property
    def user_class(self) -> bytes:
        value = self.options.get(OPT_USER_CLASS, b"")
        return value if isinstance(value, bytes) else _text(value).encode()

    @cached_property
    def is_ipxe(self) -> bool:
        """iPXE says so in the user class (77) and carries its feature option 175."""
        return b"iPXE" in self.user_class or OPT_IPXE_ENCAP in self.options

    @property
    def guid(self) -> bytes | None:
        value = self.options.get(OPT_GUID)
        return value if isinstance(value, bytes) else None

    @property
    def client_id(self) -> bytes | None:
        value = self.options.get(OPT_CLIENT_ID)
        return value if isinstance(value, bytes) and value else None

    @property
    def requested_ip(self) -> str | None:
        value = self.options.get(OPT_REQUESTED_IP)
        return value if isinstance(value, str) else None

    @property
    def server_id(self) -> str | None:
        value = self.options.get(OPT_SERVER_ID)
        return value if isinstance(value, str) else None

    @property
    def hostname(self) -> str:
        return _text(self.options.get(OPT_HOSTNAME, b""))

    @property
    def param_request_list(self) -> list[int]:
        value = self.options.get(OPT_PARAM_LIST, [])
        if isinstance(value, int):
            return [value]
        return list(value) if isinstance(value, (list, bytes)) else []

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value) if value is not None else ""


def parse(data: bytes) -> DhcpRequest:
    """Decode a BOOTREQUEST; any inconsistency raises MalformedPacket."""
    try:
        bootp = BOOTP(data)
    except Exception as exc:  # scapy raises many exception types on junk
        raise MalformedPacket(f"undecodable: {exc}") from None
    if bootp.op != 1 or DHCP not in bootp:
        raise MalformedPacket("not a DHCP request", "not_dhcp")
    options: dict[int, Any] = {}
    for item in bootp[DHCP].options:
        if item == "end":  # scapy reads on past it; dnsmasq and RFC 2131 clients stop here
            break
        if isinstance(item, str):  # 'pad'
            continue
        if not isinstance(item, tuple) or len(item) < 2:
            raise MalformedPacket(f"bad option {item!r}", "bad_option")
        code = _name_to_code(item[0])
        if code is None:
            continue
        options[code] = item[1] if len(item) == 2 else list(item[1:])
    if OPT_MSG_TYPE not in options or not isinstance(options[OPT_MSG_TYPE], int):
        raise MalformedPacket("no message type", "no_message_type")
    chaddr = bytes(bootp.chaddr)
    if len(chaddr) < 6 or bootp.hlen != 6:
        # records, leases and reservations are keyed by a 6-byte MAC, whatever the htype
        raise MalformedPacket(f"hardware address length {bootp.hlen}", "hardware_address")
    return DhcpRequest(
        op=bootp.op,
        htype=bootp.htype,
        hlen=bootp.hlen,
        xid=bootp.xid,
        secs=bootp.secs,
        flags=int(bootp.flags),
        ciaddr=bootp.ciaddr,
        giaddr=bootp.giaddr,
        chaddr=chaddr,
        options=options,
    )


def build_reply(
    request: DhcpRequest,
    msg_type: int,
    *,
    server_ip: str,
    yiaddr: str = "0.0.0.0",
    siaddr: str = "0.0.0.0",
    boot_file: str = "",
    options: Iterable[tuple[str | int, Any]] = (),
) -> bytes:
    """Encode a BOOTREPLY answering `request`. Options 53 and 54 come first; `options` are
    scapy (name, value) pairs or (code, bytes) for options scapy has no name for."""
    file_bytes = boot_file.encode()
    if len(file_bytes) > 127:
        raise ValueError(f"boot file name longer than 127 bytes: {boot_file!r}")
    dhcp_options: list[Any] = [("message-type", msg_type), ("server_id", server_ip)]
    dhcp_options.extend(options)
    dhcp_options.append("end")
    reply = BOOTP(
        op=2,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags,
        ciaddr=request.ciaddr,
        yiaddr=yiaddr,
        siaddr=siaddr,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        file=file_bytes,
    ) / DHCP(options=dhcp_options)
    data = bytes(reply)
    if len(data) < MIN_BOOTP_SIZE:  # some ROMs drop replies shorter than BOOTP's 300 bytes
        data += b"\x00" * (MIN_BOOTP_SIZE - len(data))
    return data


def parse_reply(data: bytes) -> tuple[BOOTP, dict[int, Any]]:
    """Decode a BOOTREPLY into scapy's packet and a {code: value} map (tests, probes)."""
    bootp = BOOTP(data)
    options: dict[int, Any] = {}
    if DHCP in bootp:
        for item in bootp[DHCP].options:
            if isinstance(item, tuple) and len(item) >= 2:
                code = _name_to_code(item[0])
                if code is not None:
                    options[code] = item[1] if len(item) == 2 else list(item[1:])
    return bootp, options


def is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True
