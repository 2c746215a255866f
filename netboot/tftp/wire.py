"""TFTP packets: opcodes, error codes, and the few encoders and decoders the server needs.

OACK/ERROR encoding use tftpy's packet classes (rare packets, so their cost does not matter);
DATA and ACK, the per-block hot path, use struct directly (tftpy's ACK decode costs ~10x
more, see docs/tftp.md). Read requests are decoded here: tftpy's decoder rejects what RFC
2347 says to ignore (an option with an empty value such as RFC 2090 `multicast`, an option
without a value) and non-ASCII names, and a rejected RRQ got no answer at all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketERR, TftpPacketOACK

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6
ERR_NOT_FOUND, ERR_ACCESS, ERR_ILLEGAL, ERR_UNKNOWN_TID, ERR_OPTIONS = 1, 2, 4, 5, 8

HEAD = struct.Struct("!HH")  # opcode and block number (DATA, ACK) or error code (ERROR)
OPCODE = struct.Struct("!H")
_codec = TftpPacketFactory()  # tests decode the server's OACK and ERROR packets with it
MAX_OPTIONS = 16  # options read from one RRQ (the RFCs define 5; the rest is ignored)


class MalformedRequest(ValueError):
    """Not a decodable read request; `reason` is a short fixed key for the drop counters."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ReadRequest:
    """A decoded RRQ. The filename keeps bytes that are not UTF-8 as surrogate escapes (the
    file system sees the bytes the client sent); options are lower-cased, first one wins."""

    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)


def error_packet(code: int) -> bytes:
    """An ERROR packet with tftpy's standard message for the code."""
    packet = TftpPacketERR()
    packet.errorcode = code
    return packet.encode().buffer


def oack_packet(options: dict[str, str]) -> bytes:
    packet = TftpPacketOACK()
    packet.options = options
    return packet.encode().buffer


def data_packet(block: int, payload: bytes) -> bytes:
    """DATA with the block number wrapped to 16 bits (the wire's range)."""
    return HEAD.pack(OP_DATA, block & 0xFFFF) + payload


def opcode(data: bytes) -> int:
    """The opcode of a datagram, 0 if it is too short to have one."""
    return OPCODE.unpack_from(data)[0] if len(data) >= 2 else 0


def parse_rrq(data: bytes) -> ReadRequest:
    """Decode `opcode filename NUL mode NUL [option NUL value NUL]*` (RFC 1350, 2347).

    Only a missing filename or mode terminator is malformed (MalformedRequest). An option
    with an empty value, a trailing option without value or terminator, and options past
    MAX_OPTIONS are ignored, as RFC 2347 lets a server ignore any option."""
    if opcode(data) != OP_RRQ:
        raise MalformedRequest("not a read request", "not_rrq")
    fields = data[2:].split(b"\x00")
    if len(fields) < 3:  # filename NUL mode NUL leaves at least ["name", "mode", ""]
        raise MalformedRequest("no NUL after filename or mode", "unterminated")
    name, mode, rest = fields[0], fields[1], fields[2:-1]  # the last one follows the last NUL
    if not name:
        raise MalformedRequest("empty filename", "empty_filename")
    options: dict[str, str] = {}
    for i in range(0, min(len(rest), 2 * MAX_OPTIONS) - 1, 2):
        key = rest[i].decode("ascii", "replace").lower()
        value = rest[i + 1].decode("ascii", "replace")
        if key and value and key not in options:
            options[key] = value
    return ReadRequest(
        name.decode("utf-8", "surrogateescape"),
        mode.decode("ascii", "replace").lower(),
        options,
    )


def request_filename(data: bytes) -> str:
    """Best-effort name from a request we won't parse fully (for the log)."""
    return data[2:].split(b"\x00", 1)[0].decode("ascii", "replace")
