"""What full DHCP needs before it answers anything: the lease file read and the ARP probe
socket open.

Split from `full.py` (which stays the RFC 2131 state machine and nothing else): both are
one-off start-up steps whose only outcome besides success is a one-line FullDhcpError, the
message a user acts on (fix the lease file, run as root, or turn the probe off).
"""

from __future__ import annotations

import logging

from netboot.dhcp.leases import LeaseFileError, LeaseStore
from netboot.dhcp.probe import ArpProber
from netboot.errors import UserError

log = logging.getLogger("netboot.dhcp.full")


class FullDhcpError(UserError):
    """Full DHCP cannot start (lease file unreadable, probe socket refused); one line."""


async def load_leases(leases: LeaseStore) -> None:
    """Read the lease file (FullDhcpError naming it when it cannot be read)."""
    try:
        await leases.load()
    except (LeaseFileError, OSError) as exc:
        raise FullDhcpError(
            str(exc)
            if isinstance(exc, LeaseFileError)
            else f"lease file {leases.path}: {exc.strerror or exc}"
        ) from None


def open_prober(probe: bool, interface: str) -> ArpProber | None:
    """The ARP prober of `interface` (None when `dhcp.probe` is off or no interface was
    given: addresses are then offered unprobed); FullDhcpError when the socket is refused."""
    if not probe:
        return None
    if not interface:
        log.warning("no interface given: addresses are offered without an ARP probe")
        return None
    prober = ArpProber(interface)
    try:
        prober.open()
    except OSError as exc:
        raise FullDhcpError(
            f"cannot open the ARP probe socket on {interface}: {exc.strerror}"
            " (run as root, or set dhcp.probe = false)"
        ) from None
    return prober
