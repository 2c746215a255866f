"""Flags and config loading shared by `netboot image` and `netboot kernel`.

Both find sources under `image.base_dir` and publish into `server.root`, and both take
`ltsp kernel`'s -k rule; declaring those once keeps the two commands' spelling, help and
override rules (flags win over the config file) from drifting apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from netboot import config as config_mod


def add_kernel_rule_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-k",
        "--kernel-initrd",
        dest="kernel_initrd",
        metavar="GLOB-REGEX",
        help="kernel glob and sed for its initrd, tried first: 'vmlinuz-6* s|vmlinuz|initrd.img|'",
    )


def add_location_flags(parser: argparse.ArgumentParser) -> None:
    """--config, --root and --base-dir: which config, where to publish, where sources are."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file")
    parser.add_argument("--root", type=Path, metavar="DIR", help="served root (server.root)")
    parser.add_argument(
        "--base-dir", type=Path, metavar="DIR", help="where sources are looked up (image.base_dir)"
    )


def image_config(
    args: argparse.Namespace, extra: dict[str, Any] | None = None
) -> config_mod.Config:
    """The config with --root and --base-dir (and `extra` overrides, dotted keys) applied;
    raises ConfigError, shown by `cli.main` as one line with exit 2."""
    return config_mod.load_for_command(
        args.config,
        {
            **(extra or {}),
            "server.root": str(args.root) if args.root else None,
            "image.base_dir": str(args.base_dir) if args.base_dir else None,
        },
    )
