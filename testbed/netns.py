"""Network namespaces for tests: create, wire with veth pairs, run programs in, remove.

Every name is `nbtest-<pid>-<token>-<role>`: parallel runs and other engineers' beds never
collide, and a namespace left behind by a killed run (its pid gone) is recognised and removed
by the next one. `close()` kills what still runs inside and deletes the namespace; the exit
hooks of `testbed.cleanup` do the same for a run that is interrupted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator

from testbed import cleanup

PREFIX = "nbtest"
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+-[\w.-]+$")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def new_tag() -> str:
    """The common part of the names of one bed's namespaces."""
    return f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"


class Namespace:
    """One network namespace, named `<tag>-<role>`; `exec()` prefixes a command to run in it."""

    def __init__(self, role: str, tag: str | None = None) -> None:
        self.name = f"{tag or new_tag()}-{role}"
        ip("netns", "add", self.name)
        self._cleanup_id = cleanup.register(self.close)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`ip -n NAME ...`: configure this namespace's links and addresses."""
        return ip("-n", self.name, *args, check=check)

    def up(self, interface: str, address: str = "", mac: str = "") -> None:
        """Bring `interface` up, with this MAC and address (CIDR) first if they are given."""
        if mac:
            self.ip("link", "set", interface, "address", mac)
        if address:
            self.ip("addr", "add", address, "dev", interface)
        self.ip("link", "set", interface, "up")

    def exec(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.exec(*cmd), capture_output=True, text=True, check=check, timeout=timeout
        )

    def popen(self, *cmd: str, **kwargs) -> subprocess.Popen:
        """Start a program inside (`ip netns exec` execs it: the Popen's pid is the program's)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.exec(*cmd), **kwargs)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run this thread inside the namespace: sockets made there stay in it afterwards."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def close(self) -> None:
        """Kill what runs inside (never this process) and delete the namespace."""
        _kill_processes_in(self.name)
        ip("netns", "delete", self.name, check=False)
        cleanup.done(self._cleanup_id)


def veth(a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
    """Join two namespaces with a veth pair; both ends are down until `up()`."""
    a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)


def namespace_names() -> list[str]:
    lines = ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in lines if line.split()]


def remove_stale_namespaces() -> list[str]:
    """Delete test namespaces whose creating process is gone (a run killed with SIGKILL)."""
    removed = []
    for name in namespace_names():
        match = _NAME_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_processes_in(name)
            ip("netns", "delete", name, check=False)
            removed.append(name)
    return removed


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_processes_in(name: str) -> None:
    # only processes living inside a namespace of ours; a thread of this process may be too
    for pid in ip("netns", "pids", name, check=False).stdout.split():
        if int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
