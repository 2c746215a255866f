"""Where the iPXE-side material of `ipxe/` is found (script templates and the client scripts
packed into the initrds), and `systemd/` (the systemd unit).

A checkout (editable install) uses its own `ipxe/`; a wheel installs the same files under
`<prefix>/share/netboot/ipxe` (pyproject data-files). NETBOOT_IPXE_DIR overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent / "ipxe"
_INSTALLED = Path(sys.prefix) / "share" / "netboot" / "ipxe"
_SYSTEMD_CHECKOUT = _CHECKOUT.parent / "systemd"
_SYSTEMD_INSTALLED = _INSTALLED.parent / "systemd"


def ipxe_dir() -> Path:
    override = os.environ.get("NETBOOT_IPXE_DIR")
    if override:
        return Path(override)
    return _CHECKOUT if _CHECKOUT.is_dir() else _INSTALLED


def systemd_dir() -> Path:
    """`systemd/` of the checkout, else `<prefix>/share/netboot/systemd` of a wheel install."""
    return _SYSTEMD_CHECKOUT if _SYSTEMD_CHECKOUT.is_dir() else _SYSTEMD_INSTALLED
