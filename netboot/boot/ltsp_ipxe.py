"""The per-client settings an LTSP site keeps in `ltsp.ipxe` (written by `ltsp ipxe` from
ltsp.conf, or by hand), read so a site moved to netboot keeps them:

    :52:54:00:12:34:56
    set img x86_32
    set cmdline_client quiet splash
    set menu-timeout 0
    goto start

A `:MAC` label opens a client's section; the next label or `goto` closes it. Only these
three settings are read; anything else in the script is LTSP's and ignored. Read on every
call (a small file), so an edit shows at the next boot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAC_LABEL = re.compile(r"^:([0-9a-f]{2}(?::[0-9a-f]{2}){5})\s*$")
SETTING = re.compile(r"^set\s+(img|cmdline_client|menu-timeout)\s+(.*?)\s*$")


@dataclass(frozen=True)
class LtspClient:
    """One client's LTSP settings; empty / None when its section does not set them."""

    image: str = ""  # an LTSP image name (x86_64), offered here as entry `ltsp-<name>`
    kernel_params: str = ""
    menu_timeout: int | None = None  # seconds (ltsp.ipxe says milliseconds)


def read_client(path: Path, mac: str) -> LtspClient:
    """The section of `mac` (lower case, colons) in `path`; LtspClient() when none."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return LtspClient()
    found: dict[str, str] = {}
    inside = False
    for raw in lines:
        line = raw.strip()
        label = MAC_LABEL.match(line.lower())
        if label or line.startswith((":", "goto ")):
            if inside:
                break  # the section ended
            inside = bool(label) and label.group(1) == mac
            continue
        setting = SETTING.match(line) if inside else None
        if setting:
            found[setting.group(1)] = setting.group(2)
    timeout = found.get("menu-timeout", "")
    return LtspClient(
        image=found.get("img", ""),
        kernel_params=found.get("cmdline_client", ""),
        menu_timeout=max(0, int(timeout)) // 1000 if timeout.lstrip("-").isdigit() else None,
    )
