"""The test LAN: network namespaces for a bridge, a foreign DHCP server and the netboot server.

    namespace LAN:  br0 --+-- tapN (QEMU clients, added per test)
                          +-- pdhcp <-> vdhcp in namespace DHCP (dnsmasq, addresses only)
                          +-- psrv  <-> vsrv  in namespace SRV  (netboot serve)

Every name carries this process's pid and a random token, so parallel runs and other
engineers' beds never collide, and a bed left behind by a killed run (its pid gone) is
recognised and removed by the next run. Addresses are a 10.x.y.0/24 that exists only inside
these namespaces.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vmbed import cleanup

PREFIX = "nbvm"
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+-\w+$")
SERVER_IF = "vsrv"
DHCP_IF = "vdhcp"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _random_subnet() -> str:
    """A 10.x.y (/24) picked per run: it only exists inside this run's namespaces."""
    return f"10.{secrets.randbelow(200) + 50}.{secrets.randbelow(250) + 1}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Delete beds whose creating process is gone (a run killed with SIGKILL)."""
    removed = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_namespace_processes(name)
            ip("netns", "delete", name, check=False)
            removed.append(name)
    return removed


def _kill_namespace_processes(name: str) -> None:
    # only processes living inside a namespace of ours (created by a dead run of this bed)
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


@dataclass
class TestNetwork:
    """One isolated LAN; `create()` builds it, `close()` removes every trace."""

    workdir: Path
    foreign_dhcp: bool = True
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = field(default_factory=lambda: _random_subnet())
    dnsmasq: subprocess.Popen | None = None
    _taps: int = 0
    _cleanup_id: int | None = None

    __test__ = False  # not a pytest test class

    def ns(self, role: str) -> str:
        return f"{PREFIX}-{os.getpid()}-{self.token}-{role}"

    @property
    def lan(self) -> str:
        return self.ns("lan")

    @property
    def srv(self) -> str:
        return self.ns("srv")

    @property
    def dhcp(self) -> str:
        return self.ns("dhcp")

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

    def namespaces(self) -> list[str]:
        roles = ["lan", "srv"] + (["dhcp"] if self.foreign_dhcp else [])
        return [self.ns(r) for r in roles]

    def create(self) -> TestNetwork:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._cleanup_id = cleanup.register(self.close)
        for name in self.namespaces():
            ip("netns", "add", name)
            ip("-n", name, "link", "set", "lo", "up")
        ip("-n", self.lan, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        ip("-n", self.lan, "link", "set", "br0", "up")
        self._attach(self.srv, SERVER_IF, "psrv", self.server_ip)
        if self.foreign_dhcp:
            self._attach(self.dhcp, DHCP_IF, "pdhcp", self.dhcp_ip)
            self._start_dnsmasq()
        return self

    def _attach(self, namespace: str, inner: str, outer: str, address: str) -> None:
        ip(
            "-n",
            self.lan,
            "link",
            "add",
            outer,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            namespace,
        )
        ip("-n", self.lan, "link", "set", outer, "master", "br0", "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inner)
        ip("-n", namespace, "link", "set", inner, "up")

    def _start_dnsmasq(self) -> None:
        """The site's router: addresses only, no PXE options, no TFTP, no DNS."""
        start, end = self.pool
        log = open(self.dnsmasq_log, "wb")  # the child keeps its own copy
        self.dnsmasq = self.popen(
            self.dhcp,
            [
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
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def add_tap(self) -> str:
        """A new tap device on the bridge for one QEMU client."""
        self._taps += 1
        tap = f"tap{self._taps}"
        ip("-n", self.lan, "tuntap", "add", "dev", tap, "mode", "tap")
        ip("-n", self.lan, "link", "set", tap, "master", "br0", "up")
        return tap

    def remove_tap(self, tap: str) -> None:
        ip("-n", self.lan, "link", "delete", tap, check=False)

    def popen(self, namespace: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start a process inside a namespace (`ip netns exec` execs it: same pid)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], **kwargs)
        action = cleanup.register(lambda: cleanup.stop_process(proc, grace=3))
        proc._vmbed_cleanup_id = action  # type: ignore[attr-defined]
        return proc

    def run(
        self, namespace: str, argv: list[str], timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        if self.dnsmasq is not None:
            cleanup.stop_process(self.dnsmasq, grace=3)
            cleanup.done(getattr(self.dnsmasq, "_vmbed_cleanup_id", 0))
            self.dnsmasq = None
        for name in reversed(self.namespaces()):
            _kill_namespace_processes(name)
            ip("netns", "delete", name, check=False)
        if self._cleanup_id is not None:
            cleanup.done(self._cleanup_id)
            self._cleanup_id = None


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process started with `TestNetwork.popen` and drop its exit hook."""
    cleanup.stop_process(proc, grace=grace)
    cleanup.done(getattr(proc, "_vmbed_cleanup_id", 0))
