"""The interface (IPv4 address, link, MTU) and the other DHCP servers on its segment."""

from __future__ import annotations

import asyncio
from pathlib import Path

from netboot.config import Config
from netboot.dhcp.detect import DetectError, Offer, collect_offers
from netboot.doctor import Finding, note, ok, problem, secure_boot
from netboot.netinfo import InterfaceError, InterfaceInfo, pick_interface

TFTP_MIN_MTU = 544  # a 512-byte block + TFTP, UDP and IP headers
ETHERNET_MTU = 1500
DHCP_WAIT = 4.0  # dnsmasq pings an address for up to 3 s before it offers


def interface(config: Config) -> tuple[InterfaceInfo | None, list[Finding]]:
    """The interface netboot serve would use, and what is wrong with it."""
    name = config.server.interface
    try:
        info = pick_interface(name, config.server.address)
    except InterfaceError as exc:
        fix = (
            f"give {name} an IPv4 address (ip addr add ADDRESS/PREFIX dev {name})"
            if name
            else "give --interface (or server.interface) an interface with an IPv4 address"
        )
        return None, [problem(str(exc), fix)]
    findings = [ok(f"interface {info.name} has {info.network}")]
    sys_net = Path("/sys/class/net") / info.name
    state = _read(sys_net / "operstate")
    if state == "down":
        findings.append(
            problem(
                f"interface {info.name} is down", f"ip link set {info.name} up; check the cable"
            )
        )
    mtu = int(_read(sys_net / "mtu") or ETHERNET_MTU)
    if mtu < TFTP_MIN_MTU:
        findings.append(
            problem(
                f"MTU {mtu} on {info.name} is below {TFTP_MIN_MTU}: TFTP's 512-byte blocks "
                "fragment and PXE ROMs cannot reassemble them",
                f"raise the MTU (ip link set {info.name} mtu {ETHERNET_MTU})",
            )
        )
    elif mtu > ETHERNET_MTU:
        findings.append(
            note(
                f"MTU {mtu} on {info.name}: TFTP offers blocks up to {mtu - 32} bytes",
                "make sure every switch and client NIC on the segment passes jumbo frames, "
                f"or set the MTU to {ETHERNET_MTU}",
            )
        )
    else:
        findings.append(ok(f"MTU {mtu}: TFTP blocks up to {mtu - 32} bytes fit one frame"))
    return info, findings


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


async def dhcp_servers(config: Config, info: InterfaceInfo) -> list[Finding]:
    """Send a plain and a PXE DISCOVER; judge who gives addresses and who answers PXE."""
    own = {info.address, config.server.address} - {""}
    try:
        plain, pxe = await asyncio.gather(
            collect_offers(info.name, DHCP_WAIT),
            collect_offers(info.name, DHCP_WAIT, pxe=True),
        )
    except DetectError as exc:
        fix = "run netboot doctor as root (it sends from UDP port 68)"
        return [problem(str(exc), fix), *secure_boot.next_server_findings(config, own, None)]
    return judge(config, own, info.name, plain, pxe)


def judge(
    config: Config, own: set[str], interface: str, plain: list[Offer], pxe: list[Offer]
) -> list[Finding]:
    """Findings from the offers (pure: tested with made-up offers)."""
    findings = []
    site = [o for o in plain + pxe if o.gives_address and o.server not in own]
    givers = list(dict.fromkeys(o.server for o in site))
    mode = config.server.dhcp
    if mode == "full" and givers:
        findings.append(
            problem(
                f"DHCP server {', '.join(givers)} already gives addresses here, and "
                "server.dhcp is full: two servers fight over the clients",
                'use dhcp = "proxy", or turn the other server off',
            )
        )
    elif mode == "proxy" and not givers:
        findings.append(
            problem(
                f"no DHCP server gives addresses on {interface}: proxy mode needs one",
                'set dhcp = "full" (and [dhcp] range_start/range_end), or fix the site\'s '
                "DHCP server",
            )
        )
    elif givers:
        findings.append(ok(f"DHCP server {', '.join(givers)} gives addresses"))
    others = [o for o in pxe if o.pxe and o.server not in own]
    for offer in others:
        what = f"boot file {offer.boot_file!r}" if offer.boot_file else "a PXE menu"
        findings.append(
            problem(
                f"{offer.server} already answers PXE clients ({what}): with netboot too, "
                "machines boot whichever answers first",
                f"turn PXE off on {offer.server} (dnsmasq: dhcp-boot/pxe-service/"
                "dhcp-range proxy; ISC dhcpd: filename/next-server) or let it chain netboot",
            )
        )
    if not others and mode != "off":
        findings.append(ok("no other server answers PXE clients"))
    return findings + secure_boot.next_server_findings(config, own, site)
