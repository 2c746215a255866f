"""`netboot ipxe`: print the boot script a client would get, for checking a setup by eye."""

from __future__ import annotations

import argparse
from pathlib import Path

from netboot.boot import BootPolicy, ClientFacts, ipxe
from netboot.config import load_for_command
from netboot.errors import UserError
from netboot.records import normalize_mac


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path)
    parser.add_argument("--root", help="served root")
    parser.add_argument("--address", default="", help="server address (default: from config)")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--mac", default="00:00:00:00:00:00", help="client MAC")
    parser.add_argument("--platform", default="pcbios", choices=["pcbios", "efi"])


def run(args: argparse.Namespace) -> int:
    config = load_for_command(args.config, {"server.root": args.root})
    try:
        mac = normalize_mac(args.mac)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    address = args.address or config.server.address or "SERVER"
    policy = BootPolicy(config, address, args.http_port)
    client = ClientFacts(mac, ipxe=True, platform=args.platform, buildarch="x86_64")
    print(ipxe.menu_script(policy.menu(client), config.ipxe.script), end="")
    return 0
