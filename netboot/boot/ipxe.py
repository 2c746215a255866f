"""The iPXE renderer: a `BootMenu` in, the script text out (templates in `ipxe/`).

Templates use `{{name}}` placeholders so iPXE's own `${var}` syntax passes through
untouched. Values are pre-rendered text; a template naming an unknown placeholder is a bug
and raises, rather than sending a client a script with a hole in it. Nothing here decides
what a client boots: that is all in the menu it is given.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from netboot.boot.menu import (
    KIND_CHAIN,
    KIND_LINUX,
    KIND_MEMDISK,
    KIND_SANBOOT,
    MEMDISK_PATH,
    BootEntry,
    BootMenu,
)
from netboot.resources import ipxe_dir

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
DEFAULT_TEMPLATE = "boot.ipxe"
# every kind iPXE boots, and the template of its block
ENTRY_TEMPLATES = {
    KIND_LINUX: "entry.ipxe",
    KIND_CHAIN: "entry-chain.ipxe",
    KIND_SANBOOT: "entry-sanboot.ipxe",
    KIND_MEMDISK: "entry-memdisk.ipxe",
}


@cache
def _builtin(name: str) -> str:
    return (ipxe_dir() / name).read_text()


def _template(name: str) -> str:
    """A template of ipxe/ (cached), or an admin's own file by path (read each time, so an
    edit shows at the next boot)."""
    return Path(name).read_text() if os.path.isabs(name) else _builtin(name)


def render(name: str, **values: str) -> str:
    def fill(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return PLACEHOLDER.sub(fill, _template(name))


def clean(value: str) -> str:
    """Keep client-supplied text from breaking out of an iPXE comment or menu line."""
    return re.sub(r"[^A-Za-z0-9_.:/ ()-]", "", value)[:64]


def chain_script(script_url: str) -> str:
    """The stub that makes iPXE ask again with what it knows about the machine."""
    return render("chain.ipxe", script_url=script_url)


def entry_block(menu: BootMenu, entry: BootEntry) -> str:
    """The script block of one entry, by its kind."""
    label = clean(entry.label)
    if entry.kind != KIND_LINUX:
        return render(ENTRY_TEMPLATES[entry.kind], target=entry.target, label=label,
                      url=menu.url(entry.kernel), memdisk_url=menu.url(MEMDISK_PATH))  # fmt: skip
    names = " ".join(f"initrd={name}" for name, _ in entry.initrds)
    lines = "\n".join(
        f"initrd --name {name} {menu.url(path)} || goto failed" for name, path in entry.initrds
    )
    return render(
        "entry.ipxe",
        target=entry.target,
        label=label,
        kernel_url=menu.url(entry.kernel),
        initrd_names=names,
        cmdline=menu.cmdline(entry),
        initrd_lines=lines,
    )


def menu_script(menu: BootMenu, template: str = DEFAULT_TEMPLATE) -> str:
    """The menu script: every entry, the client's default, local disk and a shell.
    `template` is `ipxe.script` of the config: a name in ipxe/ or an absolute path."""
    items = []
    blocks = []
    for entry in menu.entries:
        if entry.kind not in ENTRY_TEMPLATES:
            continue  # a kind iPXE cannot boot (none today: kept for the next one)
        items.append(f"item {entry.target} {clean(entry.label)}")
        blocks.append(entry_block(menu, entry))
    for entry, why in menu.unavailable:
        items.append(f"item --gap -- {clean(entry.label)} (not offered: {clean(why)})")
    if not menu.entries and not menu.unavailable:
        items.append("item --gap -- (no images published yet: run netboot image)")
    chosen = menu.default
    default_target = chosen.target if chosen else "local"
    direct = f"goto {default_target}" if chosen is not None and menu.timeout == 0 else ""
    client = menu.client
    # EFI: "local disk" means back to the firmware's boot order
    local = "exit 1" if client.efi else "sanboot --no-describe --drive 0x80 || exit 1"
    return render(
        template,
        mac=clean(client.mac),
        platform=clean(client.platform) or "unknown",
        buildarch=clean(client.buildarch) or "unknown",
        server=menu.server,
        base=menu.base,
        timeout_ms=str(menu.timeout * 1000),
        direct_boot=direct,
        menu_items="\n".join(items),
        default_target=default_target,
        entries="\n".join(blocks),
        local_boot=local,
    )
