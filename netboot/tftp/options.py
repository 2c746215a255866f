"""TFTP option negotiation (RFC 2347, 2348, 2349, 7440) as a pure function.

The client proposes, the server accepts, clamps or ignores each option, and answers with the
accepted ones in an OACK (none accepted: no OACK, plain RFC 1350). Kept apart from sockets
and files so each rule can be tested with a dict in and a dict out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464  # RFC 2348
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255  # RFC 2349
MIN_WINDOWSIZE, MAX_WINDOWSIZE = 1, 64  # RFC 7440 allows 65535; 64 bounds the burst


@dataclass
class Negotiated:
    """What a transfer runs with, and the options acknowledged (empty: send no OACK)."""

    blksize: int = DEFAULT_BLKSIZE
    timeout: float = 2.0
    windowsize: int = 1
    acknowledged: dict[str, str] = field(default_factory=dict)


def negotiate(
    requested: dict[str, str],
    size: int | None,
    *,
    max_blksize: int = MAX_BLKSIZE,
    timeout: float = 2.0,
) -> Negotiated:
    """Apply the RFCs to the client's options.

    `size` is the file's size for `tsize` (None: unknown, as in netascii, so tsize is not
    acknowledged); `max_blksize` is what fits the link (the server passes MTU - 32 so a
    block never needs IP fragments, which many PXE ROMs cannot reassemble); `timeout` the
    server's default retransmission interval. Option names are case-insensitive;
    out-of-range or non-numeric values, and options we don't know, are left out of the
    OACK, as RFC 2347 allows."""
    result = Negotiated(timeout=timeout)
    for raw_name, raw_value in requested.items():
        name = raw_name.lower()
        try:
            value = int(raw_value)
        except ValueError:
            continue
        if name == "blksize" and value >= MIN_BLKSIZE:
            result.blksize = min(value, max(max_blksize, MIN_BLKSIZE), MAX_BLKSIZE)
            result.acknowledged["blksize"] = str(result.blksize)
        elif name == "tsize" and value >= 0 and size is not None:
            result.acknowledged["tsize"] = str(size)
        elif name == "timeout" and MIN_TIMEOUT <= value <= MAX_TIMEOUT:
            result.timeout = float(value)
            result.acknowledged["timeout"] = str(value)
        elif name == "windowsize" and value >= MIN_WINDOWSIZE:
            result.windowsize = min(value, MAX_WINDOWSIZE)
            result.acknowledged["windowsize"] = str(result.windowsize)
    return result
