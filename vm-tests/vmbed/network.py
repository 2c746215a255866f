"""The VM test LAN: a bridge for QEMU clients, a foreign DHCP server and the netboot server.

    namespace LAN:  br0 --+-- tapN (QEMU clients, added per test)
                          +-- p2 <-> vdhcp in namespace DHCP (dnsmasq, addresses only)
                          +-- p1 <-> vsrv  in namespace SRV  (netboot serve)

Built from the shared test bed (`testbed.netns`, `testbed.bridge`); the addresses are a
10.x.y.0/24 picked per run, that exists only inside these namespaces.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import cleanup
from testbed.bridge import Bridge
from testbed.netns import Namespace, new_tag

SERVER_IF = "vsrv"
DHCP_IF = "vdhcp"


def _random_subnet() -> str:
    """A 10.x.y (/24) picked per run: it only exists inside this run's namespaces."""
    return f"10.{secrets.randbelow(200) + 50}.{secrets.randbelow(250) + 1}"


@dataclass
class TestNetwork:
    """One isolated LAN; `create()` builds it, `close()` removes every trace."""

    workdir: Path
    foreign_dhcp: bool = True
    subnet: str = field(default_factory=_random_subnet)
    dnsmasq: subprocess.Popen | None = None
    dnsmasq_extra: list[str] = field(default_factory=list)  # e.g. ranges of relayed subnets
    namespaces: list[Namespace] = field(default_factory=list)
    # made by create()
    lan: Namespace = field(init=False, repr=False)
    srv: Namespace = field(init=False, repr=False)
    dhcp: Namespace = field(init=False, repr=False)  # with foreign_dhcp only
    bridge: Bridge = field(init=False, repr=False)

    __test__ = False  # not a pytest test class

    @property
    def server_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def dhcp_ip(self) -> str:
        return f"{self.subnet}.2"

    @property
    def pool(self) -> tuple[str, str]:
        return f"{self.subnet}.100", f"{self.subnet}.199"

    @property
    def dnsmasq_log(self) -> Path:
        return self.workdir / "dnsmasq.log"

    def create(self) -> TestNetwork:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tag = new_tag()
        self.lan = self._namespace("lan", tag)
        self.srv = self._namespace("srv", tag)
        self.bridge = Bridge(self.lan)
        self.bridge.attach(self.srv, SERVER_IF, address=f"{self.server_ip}/24")
        if self.foreign_dhcp:
            self.dhcp = self._namespace("dhcp", tag)
            self.bridge.attach(self.dhcp, DHCP_IF, address=f"{self.dhcp_ip}/24")
            self._start_dnsmasq()
        return self

    def _namespace(self, role: str, tag: str) -> Namespace:
        self.namespaces.append(Namespace(role, tag))
        return self.namespaces[-1]

    def _start_dnsmasq(self) -> None:
        """The site's router: addresses only, no PXE options, no TFTP, no DNS."""
        start, end = self.pool
        with open(self.dnsmasq_log, "wb") as log:  # the child keeps its own copy
            self.dnsmasq = self.dhcp.popen(
                "dnsmasq",
                "--no-daemon",
                "--port=0",
                "--conf-file=/dev/null",
                "--user=root",
                f"--interface={DHCP_IF}",
                "--bind-interfaces",
                "--log-dhcp",
                "--log-facility=-",
                f"--dhcp-range={start},{end},255.255.255.0,1h",
                f"--dhcp-leasefile={self.workdir / 'dnsmasq.leases'}",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}",
                *self.dnsmasq_extra,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def add_tap(self) -> str:
        """A new tap device on the bridge for one QEMU client."""
        return self.bridge.add_tap()

    def remove_tap(self, tap: str) -> None:
        self.bridge.remove(tap)

    def close(self) -> None:
        if self.dnsmasq is not None:
            cleanup.stop_process(self.dnsmasq, grace=3)
            self.dnsmasq = None
        for ns in reversed(self.namespaces):
            ns.close()
        self.namespaces.clear()


@contextlib.contextmanager
def network(workdir: Path, foreign_dhcp: bool, **fields: Any) -> Iterator[TestNetwork]:
    """A test network for the body of a `with` (a fixture's lifetime); `fields` are more
    TestNetwork fields (subnet, dnsmasq_extra)."""
    net = TestNetwork(workdir, foreign_dhcp=foreign_dhcp, **fields).create()
    try:
        yield net
    finally:
        net.close()
