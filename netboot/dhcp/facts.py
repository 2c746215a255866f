"""A DHCP request as the boot layer's `ClientFacts`: the one place DHCP meets boot policy."""

from __future__ import annotations

from netboot.boot.facts import ClientFacts
from netboot.dhcp.packet import DhcpRequest


def facts_from_request(request: DhcpRequest) -> ClientFacts:
    """What the packet says about the client: MAC, option 93, iPXE, HTTP Boot, relay."""
    return ClientFacts(
        mac=request.mac,
        arch=request.arch,
        ipxe=request.is_ipxe,
        http_client=request.is_http_client,
        relay=request.giaddr if request.giaddr not in ("", "0.0.0.0") else None,
    )
