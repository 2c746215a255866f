"""A client segment behind a router that runs isc-dhcp-relay, for clients booting through
a relay agent:

    namespace CLAN: br1 --+-- tapN (QEMU clients)
                          +-- c1 <-> rdown in namespace RTR (dhcrelay, forwarding)
    the test LAN:   br0 --+-- pN <-> rup   in namespace RTR
                          (netboot in SRV, the site's dnsmasq in DHCP, as in network.py)

The relay forwards to both the site's DHCP server (addresses, a range for the relayed
subnet) and netboot (boot answers). Clients are placed on CLAN; `srv`/`server_ip` are the
server's, so a `VmServe` built on this segment runs netboot on the server LAN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed.bridge import Bridge
from testbed.netns import Namespace, new_tag
from testbed.relay import DhcpRelay
from vmbed.network import DHCP_IF, SERVER_IF, TestNetwork, network


@dataclass
class RelayedSegment:
    """The client side of a relayed network; attributes as `TestNetwork` for VmServe/VmRun."""

    server_net: TestNetwork
    subnet: str
    relay: DhcpRelay
    lan: Namespace  # the clients' side (QEMU runs here)
    bridge: Bridge
    router: Namespace

    @property
    def foreign_dhcp(self) -> bool:
        return self.server_net.foreign_dhcp

    @property
    def srv(self) -> Namespace:
        return self.server_net.srv

    @property
    def server_ip(self) -> str:
        return self.server_net.server_ip

    @property
    def workdir(self) -> Path:
        return self.server_net.workdir

    @property
    def dnsmasq_log(self) -> Path:
        return self.server_net.dnsmasq_log

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.254"

    def add_tap(self) -> str:
        return self.bridge.add_tap()

    def remove_tap(self, tap: str) -> None:
        self.bridge.remove(tap)


def client_subnet(server_subnet: str) -> str:
    """The relayed /24 next to the server's (10.x.y -> 10.x.y+1, wrapping below 255)."""
    a, b, c = server_subnet.split(".")
    return f"{a}.{b}.{(int(c) % 250) + 1}"


@contextlib.contextmanager
def relayed_network(workdir: Path, foreign_dhcp: bool = True) -> Iterator[RelayedSegment]:
    """The server LAN plus a client segment behind a dhcrelay router, for a `with` body.
    Without the site's DHCP server (full DHCP) the relay forwards to netboot alone."""
    probe = TestNetwork(workdir)  # only to pick the server subnet before dnsmasq starts
    subnet = client_subnet(probe.subnet)
    gateway = f"{subnet}.254"
    ranges = [f"--dhcp-range=set:relayed,{subnet}.100,{subnet}.199,255.255.255.0,1h",
              f"--dhcp-option=tag:relayed,option:router,{gateway}"]  # fmt: skip
    with network(workdir, foreign_dhcp, subnet=probe.subnet, dnsmasq_extra=ranges) as net:
        tag = new_tag()
        router, lan = Namespace("rtr", tag), Namespace("clan", tag)
        relay = None
        try:
            net.bridge.attach(router, "rup", address=f"{net.subnet}.254/24")
            bridge = Bridge(lan, "br1")
            bridge.attach(router, "rdown", address=f"{gateway}/24")
            sides = [(net.srv, SERVER_IF)] + ([(net.dhcp, DHCP_IF)] if foreign_dhcp else [])
            for ns, interface in sides:
                ns.ip("route", "add", f"{subnet}.0/24", "via", f"{net.subnet}.254", "dev",
                      interface)  # fmt: skip
            servers = ([net.dhcp_ip] if foreign_dhcp else []) + [net.server_ip]
            relay = DhcpRelay(router, "rup", "rdown", servers, workdir / "dhcrelay.log").start()
            yield RelayedSegment(net, subnet, relay, lan, bridge, router)
        finally:
            if relay is not None:
                relay.stop()
            lan.close()
            router.close()
