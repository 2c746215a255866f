"""Packets captured from real firmware (tests/data/packets, README.md there says how)."""

from __future__ import annotations

from pathlib import Path

PACKETS = Path(__file__).resolve().parent.parent / "tests" / "data" / "packets"

# what every capture has in common (capture.py's QEMU command line and LAN)
MAC = "52:54:00:c0:ff:ee"
SMBIOS_UUID = "8a1ec4e0-5c2b-4b7f-9d53-2f6e1c0ffee1"
DHCP_SERVER = "10.115.250.2"  # dnsmasq, addresses only
LEASED_IP = "10.115.250.177"


def load(name: str) -> bytes:
    """The UDP payload stored in tests/data/packets/NAME."""
    return (PACKETS / name).read_bytes()
