"""A switched LAN made per test (fixture `bridge_lan`), for DHCP servers and their clients.

The server namespace holds the bridge `br0` with the server address; every client gets its
own namespace (or shares a named one) wired to the bridge by a veth pair with a known MAC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface

import pytest

from testbed.bridge import Bridge
from testbed.netns import Namespace, new_tag

SERVER_IP = "10.99.0.1"
NETWORK = IPv4Interface(f"{SERVER_IP}/24")
BRIDGE = "br0"


@dataclass
class Client:
    """One client interface: `interface` with address `mac`, in namespace `ns`."""

    ns: Namespace
    interface: str
    mac: str


class BridgeLan:
    """The namespaces of one test; `close()` removes them and what runs in them."""

    def __init__(self) -> None:
        self.tag = new_tag()
        self.server = Namespace("srv", self.tag)
        self.namespaces: dict[str, Namespace] = {}
        self.bridge = Bridge(self.server, BRIDGE, f"{SERVER_IP}/24")

    def namespace(self, name: str) -> Namespace:
        """The client namespace `name`, made on first use."""
        if name not in self.namespaces:
            self.namespaces[name] = Namespace(name, self.tag)
        return self.namespaces[name]

    def client(self, name: str, index: int = 0, namespace: str | None = None) -> Client:
        """Interface eth<index> in namespace `namespace` (default: its own, named `name`)."""
        ns = self.namespace(namespace or name)
        interface = f"eth{index}"
        mac = _mac(self.bridge.ports + 1)
        self.bridge.attach(ns, interface, mac=mac)
        return Client(ns, interface, mac)

    def close(self) -> None:
        for ns in reversed(self.namespaces.values()):
            ns.close()
        self.namespaces.clear()
        self.server.close()


def _mac(port: int) -> str:
    return f"52:54:00:99:{port // 256:02x}:{port % 256:02x}"


@pytest.fixture
def bridge_lan() -> Iterator[BridgeLan]:
    """A fresh LAN for one test."""
    lan = BridgeLan()
    try:
        yield lan
    finally:
        lan.close()
