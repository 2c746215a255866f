"""The per-client settings an LTSP site keeps in `ltsp.ipxe` (written by `ltsp ipxe` from
ltsp.conf, or by hand), read so a site moved to netboot keeps them:

    :52:54:00:12:34:56
    set img x86_32
    set cmdline_client quiet splash
    set menu-timeout 0
    goto start

A `:MAC` label opens a client's section; the next label or `goto` closes it. Only these
three settings are read, plus the site-wide menu timeout outside the `:MAC` sections
(`ltsp ipxe` writes MENU_TIMEOUT of ltsp.conf's [server] section, else LTSP's 5000, as
`isset ${menu-timeout} || set menu-timeout 5000` under `:start`); anything else in the
script is LTSP's and ignored. Read on every call (a small file), so an edit shows at the
next boot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAC_LABEL = re.compile(r"^:([0-9a-f]{2}(?::[0-9a-f]{2}){5})\s*$")
SETTING = re.compile(r"^set\s+(img|cmdline_client|menu-timeout)\s+(.*?)\s*$")
# the site-wide default, alone or after `isset ${menu-timeout} ||` as LTSP writes it
SITE_TIMEOUT = re.compile(r"(?:^|\|\|\s*)set\s+menu-timeout\s+(\S+)\s*$")


@dataclass(frozen=True)
class LtspClient:
    """One client's LTSP settings; empty / None when its section does not set them."""

    image: str = ""  # an LTSP item name (x86_64, r_x86_64 for a chroot): see entry_name
    kernel_params: str = ""
    menu_timeout: int | None = None  # seconds (ltsp.ipxe says milliseconds)


def read_client(path: Path, mac: str) -> LtspClient:
    """The section of `mac` (lower case, colons) in `path`, its menu timeout defaulting to
    the site-wide one; LtspClient() when the file sets nothing for it."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return LtspClient()
    found: dict[str, str] = {}
    site_timeout = ""
    section = ""  # the MAC whose section we are in, "" outside any
    for raw in lines:
        line = raw.strip()
        label = MAC_LABEL.match(line.lower())
        if label or line.startswith((":", "goto ")):
            section = label.group(1) if label else ""
            continue
        if section == mac and (setting := SETTING.match(line)):
            found[setting.group(1)] = setting.group(2)
        elif not section and (site := SITE_TIMEOUT.search(line)):
            site_timeout = site.group(1)
    return LtspClient(
        image=found.get("img", ""),
        kernel_params=found.get("cmdline_client", ""),
        menu_timeout=seconds(found.get("menu-timeout", site_timeout)),
    )


def seconds(milliseconds: str) -> int | None:
    """LTSP's menu timeout in whole seconds; None when not a number (not set)."""
    if not milliseconds.lstrip("-").isdigit():
        return None
    return max(0, int(milliseconds)) // 1000


def entry_name(image: str, offered: set[str]) -> str:
    """The entry of LTSP's item `image`: `ltsp-IMAGE`; a chroot's item `r_NAME` is
    `ltsp-NAME` when no image took that name (netboot names the chroot as LTSP only when
    both exist); "" for no item."""
    if not image:
        return ""
    if f"ltsp-{image}" not in offered and image.startswith("r_"):
        return f"ltsp-{image.removeprefix('r_')}"
    return f"ltsp-{image}"
