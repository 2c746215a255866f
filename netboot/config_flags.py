"""Command-line flags generated from the config schema, so every key has a flag.

`server.*` keys become `--key-name`; other sections `--section-key-name` (`--boot-menu-timeout`,
`--dhcp-range-start`). A command's hand-written flags (short names, choices) are passed in
`taken` and not generated again. Values are parsed by the key's type: whole numbers, true/false
(`--x` / `--no-x`), comma-separated lists, and `MAC=ADDRESS[,HOSTNAME]` for reservations.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from netboot.config import SCHEMA, Key


def flag_name(section: str, key: str) -> str:
    name = key if section == "server" else f"{section}_{key}"
    return "--" + name.replace("_", "-")


def _dest(section: str, key: str) -> str:
    return f"cfg__{section}__{key}"


def _reservation(text: str) -> tuple[str, dict[str, str]]:
    mac, sep, rest = text.partition("=")
    if not sep or not rest:
        raise argparse.ArgumentTypeError(f"{text!r} is not MAC=ADDRESS[,HOSTNAME]")
    address, _, hostname = rest.partition(",")
    return mac, {"address": address, "hostname": hostname}


def add_key_flags(
    parser: argparse.ArgumentParser, sections: Iterable[str], taken: Iterable[str] = ()
) -> None:
    """Add a flag for every key of `sections` that has no hand-written flag in `taken`
    (dotted keys)."""
    skip = set(taken)
    group = parser.add_argument_group("config keys (each overrides the config file)")
    for section in sections:
        for key, spec in SCHEMA[section].items():
            if f"{section}.{key}" in skip or not spec.flag:
                continue
            _add(group, section, key, spec)


def _add(group: argparse._ArgumentGroup, section: str, key: str, spec: Key) -> None:
    flag = flag_name(section, key)
    dest = _dest(section, key)
    default = spec.default
    help_text = f"{spec.help or section + '.' + key} (default: {default!r})"
    if spec.type is bool:
        group.add_argument(
            flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text
        )
    elif spec.type is int:
        group.add_argument(flag, dest=dest, type=int, default=None, metavar="N", help=help_text)
    elif spec.type is list:
        group.add_argument(
            flag,
            dest=dest,
            default=None,
            metavar="A,B",
            type=lambda text: [v for v in text.split(",") if v],
            help=help_text,
        )
    elif spec.type is dict:
        group.add_argument(
            flag.removesuffix("s"),
            dest=dest,
            action="append",
            default=None,
            type=_reservation,
            metavar="MAC=ADDRESS[,HOSTNAME]",
            help=f"{spec.help} (repeatable)",
        )
    else:
        group.add_argument(flag, dest=dest, default=None, metavar="VALUE", help=help_text)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The generated flags the user gave, as dotted key -> value for apply_overrides."""
    found: dict[str, Any] = {}
    for name, value in vars(args).items():
        if not name.startswith("cfg__") or value is None:
            continue
        _, section, key = name.split("__", 2)
        if SCHEMA[section][key].type is dict:
            value = dict(value)
        found[f"{section}.{key}"] = value
    return found
