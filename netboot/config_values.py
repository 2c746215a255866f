"""The building blocks of the config schema: a key's spec (`Key`), the checks a value may
need, and the one error every bad value raises (`ConfigError`, naming key and file).

Split from `config.py` so that module holds the schema, the sections and loading only (it
re-exports `ConfigError` and `Key`, the names other modules use).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netboot.errors import UserError

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class ConfigError(UserError):
    """A bad config value; str() is the one line shown to the user."""

    def __init__(self, key: str, source: str, problem: str) -> None:
        super().__init__(f"config error: {key}: {problem} (in {source})")
        self.key = key
        self.source = source


@dataclass(frozen=True)
class Key:
    """One config key: its type, default and an optional extra check."""

    type: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], str | None] | None = None
    help: str = ""
    flag: bool = True  # False: a table only the config file can hold


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number 0-65535"


def _ipv4_or_empty(value: Any) -> str | None:
    if value == "":
        return None
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 address"
    return None


def _routable_group_or_empty(value: Any) -> str | None:
    """Empty, or an IPv4 multicast group routers may forward (not 224.0.0.0/24)."""
    if value == "":
        return None
    try:
        group = ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 address"
    if not group.is_multicast:
        return f"{value} is not a multicast address (224.0.0.0/4)"
    if group in ipaddress.IPv4Network("224.0.0.0/24"):
        return f"{value} is link-local (224.0.0.0/24 is never routed)"
    return None


def _ipv4_list(value: Any) -> str | None:
    for item in value:
        if not isinstance(item, str) or _ipv4_or_empty(item) or item == "":
            return f"{item!r} is not an IPv4 address"
    return None


def _http_url_or_empty(value: Any) -> str | None:
    if value == "" or value.startswith(("http://", "https://")):
        return None
    return f"{value!r} is not an http:// or https:// URL"


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be {low}-{high}"

    return check


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _str_list(value: Any) -> str | None:
    return None if all(isinstance(v, str) for v in value) else "must be a list of strings"


def _check_value(key: str, spec: Key, value: Any, source: str) -> Any:
    # bool is a subclass of int: refuse true/false where a number is wanted.
    if spec.type is int and isinstance(value, bool):
        raise ConfigError(key, source, "must be a whole number")
    if not isinstance(value, spec.type):
        expected = spec.type.__name__ if isinstance(spec.type, type) else "value"
        names = {
            "str": "a string",
            "int": "a whole number",
            "bool": "true or false",
            "list": "a list",
            "dict": "a table",
        }
        raise ConfigError(key, source, f"must be {names.get(expected, expected)}")
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise ConfigError(key, source, problem)
    return value


def _mac_section(
    key: str, name: str, table: Any, keys: dict[str, Key], source: str, what: str
) -> tuple[str, dict[str, Any]]:
    """One MAC-named table (a `[clients]` section or a DHCP reservation), checked against
    `keys`; returns (normalised MAC, values given)."""
    mac = name.lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ConfigError(key, source, f"{what} must be a MAC address")
    return mac, _keyed_table(key, table, keys, source)


def _keyed_table(key: str, table: Any, keys: dict[str, Key], source: str) -> dict[str, Any]:
    """A table whose keys must be among `keys`, each value checked; the values given."""
    if not isinstance(table, dict):
        raise ConfigError(key, source, f"must be a table of {', '.join(keys)}")
    values: dict[str, Any] = {}
    for item, value in table.items():
        if item not in keys:
            raise ConfigError(f"{key}.{item}", source, "unknown key")
        values[item] = _check_value(f"{key}.{item}", keys[item], value, source)
    return values
