"""The real `netboot serve` on a VM test network, and the config file it is given.

The test process stays in the host namespace; it reaches the server's API with curl run
inside the server namespace, so no address ever leaves the bed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from testbed.serve import ServeProcess
from vmbed.network import SERVER_IF, TestNetwork


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    *,
    default_image: str,
    kernel_params: str,
    clients: dict[str, dict[str, str]] | None = None,
    client_defaults: dict[str, str] | None = None,
    extra: str = "",
    loader: str = "ipxe",
) -> Path:
    """A server config: boot at once (no menu wait), serial console, per-client settings."""
    lines = [
        "[boot]",
        f"default_image = {toml_string(default_image)}",
        "menu_timeout = 0",
        f"kernel_params = {toml_string(kernel_params)}",
        f"loader = {toml_string(loader)}",
        "",
    ]
    if client_defaults or clients:
        lines.append("[clients]")
        for key, value in (client_defaults or {}).items():
            lines.append(f"{key} = {toml_string(value)}")
        lines.append("")
        for mac, settings in (clients or {}).items():
            lines.append(f"[clients.{toml_string(mac)}]")
            lines += [f"{key} = {toml_string(value)}" for key, value in settings.items()]
            lines.append("")
    path.write_text("\n".join(lines) + extra)
    return path


def full_dhcp_section(net: TestNetwork) -> str:
    """The `[dhcp]` table of a server in full DHCP mode on `net` (its pool, its lease file)."""
    start, end = net.pool
    return (
        f'\n[dhcp]\nrange_start = "{start}"\nrange_end = "{end}"\n'
        f'netmask = "255.255.255.0"\nlease_file = "{net.workdir / "leases.json"}"\n'
    )


class VmServe(ServeProcess):
    """`netboot serve` on the network's server interface; `net` is where its clients go."""

    def __init__(
        self, net: TestNetwork, root: Path, config: Path, log: Path, dhcp: str = "proxy",
        extra: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        super().__init__(net.srv, root, interface=SERVER_IF, address=net.server_ip,
                         dhcp=dhcp, config=config, log_path=log, extra=extra)  # fmt: skip
        self.net = net


@contextlib.contextmanager
def running(server: VmServe) -> Iterator[VmServe]:
    """Start the server for a fixture's lifetime; it must then stop cleanly on SIGTERM."""
    server.start(timeout=30)
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"netboot serve did not exit cleanly on SIGTERM ({code}):\n{server.tail()}"
