"""TFTP packets: opcodes, error codes, and the few encoders and decoders the server needs.

Request parsing and OACK/ERROR encoding use tftpy's packet classes (rare packets, so their
cost does not matter); DATA and ACK, the per-block hot path, use struct directly (tftpy's
ACK decode costs ~10x more, see docs/tftp.md).
"""

from __future__ import annotations

import struct

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketERR, TftpPacketOACK, TftpPacketRRQ

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6
ERR_NOT_FOUND, ERR_ACCESS, ERR_ILLEGAL, ERR_UNKNOWN_TID, ERR_OPTIONS = 1, 2, 4, 5, 8

HEAD = struct.Struct("!HH")  # opcode and block number (DATA, ACK) or error code (ERROR)
OPCODE = struct.Struct("!H")
_codec = TftpPacketFactory()


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


def parse_rrq(data: bytes) -> TftpPacketRRQ:
    """Decode a read request; raises on anything malformed (tftpy raises TftpException,
    struct.error, UnicodeDecodeError... so callers catch Exception)."""
    request = _codec.parse(data)
    if not isinstance(request, TftpPacketRRQ):
        raise ValueError("not a read request")
    return request


def request_filename(data: bytes) -> str:
    """Best-effort name from a request we won't parse fully (for the log)."""
    return data[2:].split(b"\x00", 1)[0].decode("ascii", "replace")
