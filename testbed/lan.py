"""A two-namespace LAN with `netboot serve` on it (fixture `lan`, one per test module)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.netns import Namespace, new_tag, veth
from testbed.serve import ServeProcess

SERVER_IP = "10.231.0.1"
CLIENT_IP = "10.231.0.50"
SERVER_IF = "vsrv"
CLIENT_IF = "vcli"


@dataclass
class Lan:
    """A server namespace running netboot serve and a client namespace, on one veth link."""

    server_ns: Namespace
    client_ns: Namespace
    serve: ServeProcess
    root: Path

    def curl(self, path: str, *args: str) -> subprocess.CompletedProcess:
        """curl the server from the client namespace, as a booting machine would."""
        return self.serve.curl(path, *args, ns=self.client_ns)

    def client_socket(self, port: int = 68, timeout: float = 3.0) -> socket.socket:
        """A UDP socket in the client namespace, bound like a DHCP client's."""
        with self.client_ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, CLIENT_IF.encode())
        sock.bind(("0.0.0.0", port))
        sock.settimeout(timeout)
        return sock


@contextlib.contextmanager
def open_lan(
    tmp: Path, *, extra: tuple[str, ...] = (), fd_limit: int | None = None
) -> Iterator[Lan]:
    """The two namespaces and `netboot serve` (with `extra` flags; under `prlimit` with
    `fd_limit` open files), all removed on exit."""
    root = tmp / "root"
    tag = new_tag()
    server_ns = Namespace("srv", tag)
    client_ns = Namespace("cli", tag)
    serve = None
    try:
        veth(server_ns, SERVER_IF, client_ns, CLIENT_IF)
        server_ns.up(SERVER_IF, f"{SERVER_IP}/24")
        client_ns.up(CLIENT_IF, f"{CLIENT_IP}/24")
        serve = ServeProcess(
            server_ns,
            root,
            interface=SERVER_IF,
            address=SERVER_IP,
            log_path=tmp / "serve.log",
            extra=extra,
        )
        if fd_limit is not None:
            serve.args = ["prlimit", f"--nofile={fd_limit}:{fd_limit}", *serve.args]
        serve.start()
        yield Lan(server_ns, client_ns, serve, root)
    finally:
        if serve is not None:
            serve.stop()
        client_ns.close()
        server_ns.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    with open_lan(tmp_path_factory.mktemp("lan")) as opened:
        yield opened
