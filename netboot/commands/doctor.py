"""`netboot doctor`: check the site in one run; one line per finding, exit 1 on a problem.

Reads the same config as `netboot serve` (file, then flags), so it checks what serve would
do. Run it as root on the server: it sends DHCP DISCOVERs from UDP port 68 and reads every
process's sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from netboot.config import load_for_command
from netboot.doctor import PROBLEM, Finding, files, network, ports, secure_boot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interface", "-i", help="interface to check (default: serve's)")
    parser.add_argument("--root", help="served root (default: server.root)")
    parser.add_argument("--config", type=Path, help="config file (default: /etc/netboot)")
    parser.add_argument(
        "--no-dhcp", action="store_true", help="do not send DHCP DISCOVERs on the LAN"
    )


async def diagnose(args: argparse.Namespace) -> list[Finding]:
    config = load_for_command(
        args.config, {"server.interface": args.interface, "server.root": args.root}
    )
    findings: list[Finding] = []
    info, found = network.interface(config)
    findings += found
    if info is not None and config.server.dhcp != "off" and not args.no_dhcp:
        findings += await network.dhcp_servers(config, info)
    else:  # the site's DHCP server was not asked for its next-server
        own = {info.address if info else "", config.server.address} - {""}
        findings += secure_boot.next_server_findings(config, own, None)
    findings += ports.port_findings(config)
    findings += await asyncio.to_thread(ports.firewall_findings, config)
    findings += files.ipxe_findings(config)
    findings += secure_boot.shim_findings(config)
    findings += await asyncio.to_thread(files.image_findings, config)
    findings += files.disk_findings(config)
    return findings


def run(args: argparse.Namespace) -> int:
    if not args.verbose:  # the findings are the output; the checks' own info lines are noise
        logging.getLogger("netboot").setLevel(logging.WARNING)
    findings = asyncio.run(diagnose(args))
    for finding in findings:
        print(finding.line())
    problems = sum(f.level == PROBLEM for f in findings)
    print(f"netboot doctor: {problems} problem(s)" if problems else "netboot doctor: all well")
    return 1 if problems else 0
