"""TFTP: a read-only server for the iPXE binaries (see docs/tftp.md).

`server` takes requests, `transfer` sends one file, `options` negotiates (pure), `wire`
encodes and decodes packets. The names below are the package's face: what `netboot.tftp`
offered as one module (tests decode with the same codec the server uses).
"""

from netboot.tftp.options import MAX_BLKSIZE, MIN_BLKSIZE, Negotiated, negotiate
from netboot.tftp.server import TftpServer
from netboot.tftp.wire import ReadRequest, _codec, error_packet, oack_packet, parse_rrq

__all__ = [
    "MAX_BLKSIZE",
    "MIN_BLKSIZE",
    "Negotiated",
    "ReadRequest",
    "TftpServer",
    "_codec",
    "error_packet",
    "negotiate",
    "oack_packet",
    "parse_rrq",
]
