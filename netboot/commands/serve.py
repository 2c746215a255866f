"""`netboot serve`: options and config merging; then the server runs until a signal.

A bad config, an unknown interface or a port already taken is raised as a `UserError`
(ConfigError, InterfaceError, StartupError) and shown by `cli.main` as one line, exit 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netboot.config import load_for_command
from netboot.config_flags import add_key_flags, overrides

# flag -> config key; every flag has a key and flags win over the file
FLAG_KEYS = {
    "interface": "server.interface",
    "address": "server.address",
    "root": "server.root",
    "http_port": "server.http_port",
    "tftp_port": "server.tftp_port",
    "dhcp": "server.dhcp",
    "dhcp_port": "server.dhcp_port",
    "proxy_port": "server.proxy_port",
    "ltsp": "server.ltsp_compat",
    "force": "dhcp.force",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="TOML config (default /etc/netboot/netboot.toml if it exists)"
    )
    parser.add_argument("--interface", "-i", help="interface to serve on (default: default route)")
    parser.add_argument("--address", help="IPv4 address advertised to clients")
    parser.add_argument("--root", help="served root (default /srv/netboot)")
    parser.add_argument("--http-port", type=int, help="HTTP port (default 80, fallback 8080)")
    parser.add_argument("--tftp-port", type=int, help="TFTP port (default 69; 0 disables)")
    parser.add_argument(
        "--dhcp", choices=["proxy", "full", "off"], help="DHCP mode (default proxy)"
    )
    parser.add_argument("--dhcp-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--proxy-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ltsp",
        action="store_true",
        default=None,
        help="also serve an existing LTSP tree (/srv/ltsp, /srv/tftp/ltsp)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="full DHCP: start even if another DHCP server answers",
    )
    add_key_flags(parser, ("server", "boot", "ipxe", "grub", "dhcp"), taken=FLAG_KEYS.values())


def run(args: argparse.Namespace) -> int:
    from netboot import eventloop
    from netboot.netinfo import pick_interface
    from netboot.server import NetbootServer, run_until_signalled

    given = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()}
    flags = {**overrides(args), **given}
    config = load_for_command(args.config, flags)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else config.server.log_level.upper())
    server_conf = config.server
    interface = pick_interface(server_conf.interface, server_conf.address)
    server = NetbootServer(config, interface, server_conf.address or interface.address)
    # SIGHUP re-reads the same file with the same flags laid over it
    return eventloop.run(run_until_signalled(server, lambda: load_for_command(args.config, flags)))
