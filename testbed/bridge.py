"""A software switch: a Linux bridge in one namespace that other namespaces plug into."""

from __future__ import annotations

from testbed.netns import Namespace, veth


class Bridge:
    """Bridge `name` in namespace `ns`; each `attach()` adds a veth port, `add_tap()` a tap."""

    def __init__(self, ns: Namespace, name: str = "br0", address: str = "") -> None:
        self.ns = ns
        self.name = name
        self.ports = 0  # ports made so far; the next one is number ports + 1
        ns.ip("link", "add", name, "type", "bridge", "forward_delay", "0")
        if address:
            ns.ip("addr", "add", address, "dev", name)
        ns.ip("link", "set", name, "up")

    def attach(self, ns: Namespace, interface: str, *, address: str = "", mac: str = "") -> int:
        """Plug `interface` of `ns` into the bridge; returns the port number (from 1)."""
        number = self._next_port()
        port = f"p{number}"
        veth(self.ns, port, ns, interface)
        self.ns.ip("link", "set", port, "master", self.name)
        self.ns.up(port)
        ns.up(interface, address, mac)
        return number

    def add_tap(self) -> str:
        """A new tap device on the bridge, for one QEMU client."""
        tap = f"tap{self._next_port()}"
        self.ns.ip("tuntap", "add", "dev", tap, "mode", "tap")
        self.ns.ip("link", "set", tap, "master", self.name, "up")
        return tap

    def remove(self, port: str) -> None:
        self.ns.ip("link", "delete", port, check=False)

    def _next_port(self) -> int:
        self.ports += 1
        return self.ports
