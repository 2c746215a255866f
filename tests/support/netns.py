"""Network namespaces for tests: create, wire with veth pairs, run programs, clean up.

Names carry the test process id so parallel or leftover runs never collide; everything a
test creates is deleted in `close()` (used as a context manager or a fixture finaliser).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class NetNamespace:
    """One namespace; `exec()` prefixes a command so it runs inside it."""

    def __init__(self, name: str) -> None:
        self.name = f"{name}{os.getpid() % 100000}"
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")

    def exec(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.exec(*cmd), capture_output=True, text=True, check=check, timeout=timeout
        )

    def popen(self, *cmd: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.exec(*cmd), **kwargs)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body inside the namespace: sockets created there stay in it afterwards."""
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
            yield
        finally:
            _libc.setns(own, CLONE_NEWNET)
            os.close(own)
            os.close(target)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def veth(a: NetNamespace, a_if: str, a_addr: str, b: NetNamespace, b_if: str, b_addr: str) -> None:
    """Join two namespaces with a veth pair; addresses are CIDR ('10.1.2.1/24') or ''."""
    tmp = f"vt{os.getpid() % 100000}"
    _ip("link", "add", tmp + "a", "type", "veth", "peer", "name", tmp + "b")
    for name, ns, ifname, addr in ((tmp + "a", a, a_if, a_addr), (tmp + "b", b, b_if, b_addr)):
        _ip("link", "set", name, "netns", ns.name)
        _ip("-n", ns.name, "link", "set", name, "name", ifname)
        if addr:
            _ip("-n", ns.name, "addr", "add", addr, "dev", ifname)
        _ip("-n", ns.name, "link", "set", ifname, "up")


def free_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
