"""systemd readiness (`Type=notify`): one datagram to $NOTIFY_SOCKET per state change.

The protocol is a single `sendto` of `KEY=VALUE` lines on an AF_UNIX datagram socket (sd_notify(3));
these few lines replace a dependency: `sdnotify` on PyPI is unmaintained since 2017 and
`systemd-python` needs libsystemd headers and a C build in the venv. Without NOTIFY_SOCKET
(not run by systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("netboot.sdnotify")


def notify(*lines: str) -> bool:
    """Send `lines` (e.g. "READY=1") to the service manager; True if a datagram went out."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    message = "\n".join(lines).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)  # a full queue drops the notice rather than stalling the loop
        try:
            sock.sendto(message, address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", address.lstrip("\0"), exc)
            return False
    return True
