"""What a client told us about itself, in a form no transport owns.

The DHCP side builds these from a request (`netboot/dhcp/facts.py`), the HTTP side from the
`/boot.ipxe` query string that `ipxe/chain.ipxe` makes iPXE send (`facts_from_query` below:
the chain script is the boot layer's own protocol). The policy decides on these alone, so a
new transport or a new question costs one builder, not a new code path.

Query values are whatever the client sent: stored as given, escaped by each renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netboot.boot.arch import firmware_name
from netboot.records import normalize_mac

# what iPXE fills into the chain URL (ipxe/chain.ipxe) besides mac=
QUERY_FIELDS = ("platform", "buildarch", "manufacturer", "product", "serial", "uuid", "asset")
MAX_QUERY_VALUE = 256  # a client cannot make us keep more than this per field


@dataclass(frozen=True)
class ClientFacts:
    """One client as the boot layer sees it. Only `mac` is always known."""

    mac: str
    arch: int | None = None  # RFC 4578 option 93; None when the client did not say
    ipxe: bool = False  # the client already runs iPXE (user class "iPXE", option 175)
    http_client: bool = False  # UEFI HTTP Boot (vendor class "HTTPClient")
    relay: str | None = None  # giaddr of a DHCP relay; None on the local segment
    platform: str = ""  # iPXE ${platform}: "pcbios", "efi"
    buildarch: str = ""  # iPXE ${buildarch}: "i386", "x86_64", "arm64"
    manufacturer: str = ""  # SMBIOS, as iPXE reports it
    product: str = ""
    serial: str = ""
    uuid: str = ""
    asset: str = ""

    @property
    def firmware(self) -> str:
        """The firmware name: from option 93 when sent, else from iPXE's platform."""
        if self.arch is not None:
            return firmware_name(self.arch)
        return {"pcbios": "bios", "efi": "efi"}.get(self.platform, "unknown")

    @property
    def efi(self) -> bool:
        return self.platform == "efi" if self.platform else self.firmware.startswith("efi")


def facts_from_query(query: Mapping[str, str]) -> ClientFacts:
    """The facts of a `/boot.ipxe?mac=...&platform=...` request; ValueError on a bad MAC."""
    values = {name: query.get(name, "")[:MAX_QUERY_VALUE] for name in QUERY_FIELDS}
    return ClientFacts(mac=normalize_mac(query.get("mac", "")), ipxe=True, **values)
