"""A byte-level look at a UDP payload before any real decoding.

On a busy LAN most DHCP traffic is not ours to answer. Decoding a packet with scapy costs
hundreds of microseconds; walking the option bytes for type 53 and 60 costs a few, so every
packet is looked at here first and only the interesting ones are decoded.
"""

from __future__ import annotations

from typing import NamedTuple

MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTREQUEST = 1
OPTIONS_OFFSET = 240
PXE_CLASSES = (b"PXEClient", b"HTTPClient")


class Glance(NamedTuple):
    """What the pre-filter saw: message type (0 if none) and option 60 (b'' if none)."""

    msg_type: int
    vendor_class: bytes

    @property
    def is_pxe(self) -> bool:
        return self.vendor_class.startswith(PXE_CLASSES)


def glance(data: bytes) -> Glance | None:
    """Return message type and vendor class of a BOOTREQUEST, or None if it is not one.

    Stops at the end option or at the first option that runs past the packet; the full
    decoder decides whether such a packet is malformed.
    """
    if len(data) < OPTIONS_OFFSET or data[0] != BOOTREQUEST or data[236:240] != MAGIC_COOKIE:
        return None
    msg_type = 0
    vendor_class = b""
    i = OPTIONS_OFFSET
    end = len(data)
    while i < end:
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= end:
            break
        length = data[i + 1]
        value_end = i + 2 + length
        if value_end > end:
            break
        if code == 53 and length == 1:
            msg_type = data[i + 2]
        elif code == 60:
            vendor_class = data[i + 2 : value_end]
        i = value_end
    return Glance(msg_type, vendor_class)
