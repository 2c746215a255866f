"""SIGHUP: which config changes a running server takes, and which need a restart.

`[boot]`, `[ipxe]`, `[clients]`, `[entries]` and `[image]` apply at once: the server builds a
new `BootPolicy` and every later answer uses it. `[server]` and `[dhcp]` are bound into sockets,
the TFTP root and the lease pool at start, so a change there keeps its running value and is
named in one "needs a restart" line. Sockets, leases, client records and transfers in flight
are never touched by a reload.
"""

from __future__ import annotations

from netboot.config import SCHEMA, Config

RESTART_SECTIONS = ("server", "dhcp")


def restart_keys(running: Config, loaded: Config) -> list[str]:
    """The dotted keys of the restart-only sections whose value differs, in schema order."""
    return [
        f"{section}.{key}"
        for section in RESTART_SECTIONS
        for key in SCHEMA[section]
        if getattr(getattr(running, section), key) != getattr(getattr(loaded, section), key)
    ]


def applicable(running: Config, loaded: Config) -> Config:
    """`loaded` with the restart-only sections kept as they run now."""
    return loaded.with_values(
        {
            f"{section}.{key}": getattr(getattr(running, section), key)
            for section in RESTART_SECTIONS
            for key in SCHEMA[section]
        }
    )
