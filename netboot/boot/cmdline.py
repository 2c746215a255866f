"""The kernel command line of a netboot image: the one list of `netboot.*` parameters.

`ipxe/initrd/lib.sh` (`nb_parse_cmdline`, run by the add-on and the standalone init) reads
exactly these; a test parses its `case` lines and compares, so the server cannot hand out a
parameter the client ignores, nor the client wait for one the server never sends.
"""

from __future__ import annotations

from collections.abc import Mapping

# name (after "netboot.") -> what the client side does with it. The order is the order on
# the command line.
NETBOOT_PARAMS: dict[str, str] = {
    "server": "the netboot server's base URL (http://S:P)",
    "image": "the image booted",
    "version": "its version",
    "method": "how to get the squashfs: http or nfs",
    "url": "http: the squashfs URL (in the version directory)",
    "transfer": "http: multicast asks SERVER/multicast/IMAGE/VERSION for a udpcast session"
    " (HTTP on any failure); http or absent fetches the URL",
    "nfs": "nfs: SERVER:/export holding the served root",
    "path": "nfs: the squashfs path inside the export",
    "toram": "nfs: 1 copies the image to RAM before mounting",
    "size": "the squashfs size in bytes, checked after an HTTP fetch",
    "sha256": "the squashfs SHA-256, checked after an HTTP fetch",
    "settings": "URL of the client settings (a shell fragment)",
}

# iPXE fills these in itself; a renderer for another loader (GRUB) resolves them per client
IPXE_MAC_HEXHYP = "${mac:hexhyp}"
IPXE_MAC = "${mac}"

# before the netboot.* ones: initramfs-tools runs the add-on's /scripts/netboot, the
# network comes up by DHCP, and iPXE names the NIC that booted
BASE_PARAMS = ("boot=netboot", "ip=dhcp", f"BOOTIF=01-{IPXE_MAC_HEXHYP}")

Value = str | int | None


def netboot_cmdline(values: Mapping[str, Value]) -> str:
    """The command line for `values` (name -> value; None or "" leaves a parameter out).
    A name that is not declared above is a bug and raises KeyError."""
    unknown = sorted(set(values) - set(NETBOOT_PARAMS))
    if unknown:
        raise KeyError(f"undeclared netboot kernel parameter(s): {', '.join(unknown)}")
    params = list(BASE_PARAMS)
    for name in NETBOOT_PARAMS:
        value = values.get(name)
        if value is not None and value != "":
            params.append(f"netboot.{name}={value}")
    return " ".join(params)


def for_client(cmdline: str, mac: str) -> str:
    """`cmdline` with iPXE's MAC variables replaced by this client's MAC (lower-case, colons),
    for a loader that cannot fill them in (GRUB renders one config per client)."""
    return cmdline.replace(IPXE_MAC_HEXHYP, mac.replace(":", "-")).replace(IPXE_MAC, mac)
