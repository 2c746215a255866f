"""The full DHCP server run in the test's own process, with its sockets on a `BridgeLan`.

The test's thread steps into the server namespace while the sockets are made, so they live
there; the test then talks to the server from client namespaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from netboot import config as config_mod
from netboot.boot import BootPolicy
from netboot.dhcp.full import FullDhcpServer
from netboot.records import ClientRecords
from testbed.bridge_lan import BRIDGE, NETWORK, SERVER_IP, BridgeLan


def full_config(tmp_path: Path, range_start: str, range_end: str, **dhcp: Any) -> config_mod.Config:
    """Config for a test: this pool, root and lease file under tmp_path; `dhcp` adds to or
    overrides the other [dhcp] settings."""
    root = tmp_path / "root"
    (root / "ipxe").mkdir(parents=True, exist_ok=True)
    for name in ("undionly.kpxe", "snponly.efi"):
        (root / "ipxe" / name).write_bytes(b"fake iPXE binary")
    data: dict[str, Any] = {
        "server": {"root": str(root)},
        "dhcp": {
            "range_start": range_start,
            "range_end": range_end,
            "lease_file": str(tmp_path / "leases.json"),
            "probe": False,
            **dhcp,
        },
    }
    return config_mod.parse(data, "test")


def make_server(config: config_mod.Config) -> FullDhcpServer:
    policy = BootPolicy(config, SERVER_IP, 8080)
    return FullDhcpServer(
        config,
        policy,
        ClientRecords(),
        server_ip=SERVER_IP,
        interface=BRIDGE,
        network=NETWORK,
        port=67,
        proxy_port=4011,
    )


@contextlib.asynccontextmanager
async def serving(lan: BridgeLan, config: config_mod.Config) -> AsyncIterator[FullDhcpServer]:
    """A started FullDhcpServer whose sockets live in the server namespace."""
    server = make_server(config)
    with lan.server.entered():
        await server.start()
    try:
        yield server
    finally:
        await server.close()
