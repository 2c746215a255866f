"""The `netboot` command: subcommands grouped like LTSP's (`serve`, `image`, `kernel`,
`initrd`, `nfs`, `ipxe`).

Each subcommand lives in its own module of `netboot.commands` exposing
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when their
subcommand runs, so `netboot serve` does not pay for the image tools and vice versa.

Commands do not print their own errors: whatever the user can fix is raised as a
`netboot.errors.UserError`, and `main` is the one place that turns it into the line
`netboot COMMAND: <error>` on stderr and the error's exit code. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from netboot import __version__
from netboot.errors import UserError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("netboot.commands.serve", "answer PXE clients: proxy/full DHCP, TFTP and HTTP"),
    "image": ("netboot.commands.image", "build a squashfs image from a chroot, disk or /"),
    "kernel": ("netboot.commands.kernel", "extract kernel and initrd from an image"),
    "initrd": ("netboot.commands.initrd", "build the client add-on initrd (or standalone)"),
    "nfs": ("netboot.commands.nfs", "print or install the NFS exports for the NFS method"),
    "ipxe": ("netboot.commands.ipxe", "print the iPXE boot script a client would get"),
    "service": ("netboot.commands.service", "install netboot as a systemd service"),
    "doctor": ("netboot.commands.doctor", "check this host and LAN for what stops clients booting"),
}


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line (first word that is one), if any."""
    return next((word for word in argv if word in SUBCOMMANDS), None)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netboot",
        description="Network boot server bundle: PXE/iPXE over DHCP, TFTP and HTTP.",
    )
    parser.add_argument("--version", action="version", version=f"netboot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module_name)
        if name == _chosen(argv):  # only the chosen subcommand's module is imported
            importlib.import_module(module_name).add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"netboot {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"netboot {args.command}: interrupted", file=sys.stderr)
        return 130
