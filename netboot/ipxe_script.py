"""Rendering the iPXE scripts from the templates in `ipxe/`.

Templates use `{{name}}` placeholders so iPXE's own `${var}` syntax passes through
untouched. Values are pre-rendered text; a template naming an unknown placeholder is a bug
and raises, rather than sending a client a script with a hole in it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from netboot.bootmenu import BootEntry
from netboot.config import Config
from netboot.resources import ipxe_dir

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


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


@dataclass(frozen=True)
class ClientQuery:
    """What iPXE told us about itself in the query string."""

    mac: str
    platform: str = ""
    buildarch: str = ""


def _clean(value: str) -> str:
    """Keep client-supplied text from breaking out of an iPXE comment or menu line."""
    return re.sub(r"[^A-Za-z0-9_.:/ ()-]", "", value)[:64]


def chain_script(script_url: str) -> str:
    return render("chain.ipxe", script_url=script_url)


def boot_script(
    entries: list[BootEntry],
    *,
    client: ClientQuery,
    base: str,
    server: str,
    default: str,
    timeout: int,
    extra_params: str = "",
    template: str = "boot.ipxe",
) -> str:
    """The menu script: every entry, a default chosen for this client, and local/shell."""
    items = []
    blocks = []
    for entry in entries:
        items.append(f"item {entry.target} {_clean(entry.label)}")
        names = " ".join(f"initrd={name}" for name, _ in entry.initrds)
        lines = "\n".join(
            f"initrd --name {name} {base}{path} || goto failed" for name, path in entry.initrds
        )
        cmdline = f"{entry.cmdline} {extra_params}".strip()
        blocks.append(
            render(
                "entry.ipxe",
                target=entry.target,
                label=_clean(entry.label),
                kernel_url=f"{base}{entry.kernel}",
                initrd_names=names,
                cmdline=cmdline,
                initrd_lines=lines,
            )
        )
    if not entries:
        items.append("item --gap -- (no images published yet: run netboot image)")
    chosen = next((e for e in entries if e.name == default), entries[0] if entries else None)
    default_target = chosen.target if chosen else "local"
    direct = f"goto {default_target}" if chosen is not None and timeout == 0 else ""
    local = "exit 1" if client.platform == "efi" else "sanboot --no-describe --drive 0x80 || exit 1"
    return render(
        template,
        mac=_clean(client.mac),
        platform=_clean(client.platform) or "unknown",
        buildarch=_clean(client.buildarch) or "unknown",
        server=server,
        base=base,
        timeout_ms=str(timeout * 1000),
        direct_boot=direct,
        menu_items="\n".join(items),
        default_target=default_target,
        entries="\n".join(blocks),
        local_boot=local,
    )


def client_script(
    config: Config, entries: list[BootEntry], client: ClientQuery, *, base: str, server: str
) -> str:
    """The boot script for one client: its `[clients]` settings choose the default image and
    add kernel parameters after the site-wide ones."""
    settings = config.client_settings(client.mac)
    boot = config.boot
    extra = " ".join(p for p in (boot.kernel_params, settings.get("kernel_params", "")) if p)
    return boot_script(
        entries,
        client=client,
        base=base,
        server=server,
        default=settings.get("image") or boot.default_image,
        timeout=boot.menu_timeout,
        extra_params=extra,
        template=config.ipxe.script,
    )
