"""What a relay agent added to a request: its address (giaddr) and option 82 (RFC 3046),
for client records and logs. Sub-option values are client-path data: shown escaped."""

from __future__ import annotations

from typing import Any

from netboot.dhcp.packet import DhcpRequest

OPT_RELAY_AGENT = 82
SUBOPTION_NAMES = {1: "agent_circuit", 2: "agent_remote"}


def _printable(value: bytes) -> str:
    """Text as is when it is plain ASCII (dhcrelay sends the interface name), else hex."""
    if value and all(0x21 <= b < 0x7F for b in value):
        return value.decode()
    return value.hex(":")


def agent_suboptions(raw: bytes) -> dict[str, str]:
    """Circuit and remote ID of an option 82 value; a truncated option stops the walk."""
    found: dict[str, str] = {}
    at = 0
    while at + 2 <= len(raw):
        code, length = raw[at], raw[at + 1]
        value = raw[at + 2 : at + 2 + length]
        if len(value) < length:
            break
        if code in SUBOPTION_NAMES:
            found[SUBOPTION_NAMES[code]] = _printable(value[:64])
        at += 2 + length
    return found


def relay_details(request: DhcpRequest) -> dict[str, Any]:
    """{relay, agent_circuit, agent_remote} of a relayed request; {} on the local segment."""
    if request.giaddr in ("", "0.0.0.0"):
        return {}
    details: dict[str, Any] = {"relay": request.giaddr}
    raw = request.options.get(OPT_RELAY_AGENT)
    if isinstance(raw, bytes):
        details.update(agent_suboptions(raw))
    return details
