"""Where the iPXE-side material of `ipxe/` is found (script templates and the client scripts
packed into the initrds), and `dist/` (the systemd unit).

A checkout (editable install) uses its own `ipxe/`; a wheel installs the same files under
`<prefix>/share/netboot/ipxe` (pyproject data-files). NETBOOT_IPXE_DIR overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent / "ipxe"
_INSTALLED = Path(sys.prefix) / "share" / "netboot" / "ipxe"
_DIST_CHECKOUT = _CHECKOUT.parent / "dist"
_DIST_INSTALLED = _INSTALLED.parent / "dist"


def ipxe_dir() -> Path:
    override = os.environ.get("NETBOOT_IPXE_DIR")
    if override:
        return Path(override)
    return _CHECKOUT if _CHECKOUT.is_dir() else _INSTALLED


def dist_dir() -> Path:
    """`dist/` of the checkout, else `<prefix>/share/netboot/dist` of a wheel install."""
    return _DIST_CHECKOUT if _DIST_CHECKOUT.is_dir() else _DIST_INSTALLED
