"""Configuration: one TOML file, every key known and typed, command-line flags win.

The schema below is the single list of keys. A key the schema does not know, or a value of
the wrong type, is an error that names the key and the file, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass, replace
from pathlib import Path
from typing import Any

from netboot.config_values import (
    ConfigError,
    Key,
    _between,
    _check_value,
    _http_url_or_empty,
    _ipv4_list,
    _ipv4_or_empty,
    _keyed_table,
    _mac_section,
    _non_negative,
    _one_of,
    _port,
    _positive,
    _routable_group_or_empty,
    _str_list,
)

DEFAULT_CONFIG_FILE = Path("/etc/netboot/netboot.toml")

SCHEMA: dict[str, dict[str, Key]] = {
    "server": {
        "interface": Key(str, "", help="interface to serve on (default: default route)"),
        "address": Key(str, "", _ipv4_or_empty, "IPv4 address advertised to clients"),
        "root": Key(str, "/srv/netboot", help="served root: images, kernels, iPXE binaries"),
        "tftp_root": Key(str, "", help="TFTP root (default: the served root)"),
        "http_port": Key(int, 80, _port, "HTTP port; 0 picks a free one"),
        "http_fallback_port": Key(int, 8080, _port, "HTTP port tried when http_port is taken"),
        "tftp_port": Key(int, 69, _port, "TFTP port (0 disables TFTP)"),
        "tftp_max_transfers": Key(int, 500, _positive, "concurrent TFTP transfers in all"),
        "tftp_max_per_client": Key(int, 8, _positive, "concurrent TFTP transfers per client IP"),
        "max_clients": Key(
            int, 10000, _positive, "client records kept (least recently seen dropped first)"
        ),
        "client_idle_seconds": Key(
            int, 604800, _positive, "a client record unseen this long is dropped"
        ),
        "client_log_lines": Key(
            int, 500, _non_negative, "client steps logged a second at most (0: all)"
        ),
        "http_idle_timeout": Key(
            int, 15, _positive, "seconds an HTTP connection may idle or send its request head"
        ),
        "http_max_connections": Key(
            int, 0, _non_negative, "concurrent HTTP connections (0: open-file limit - 256)"
        ),
        "dhcp": Key(str, "proxy", _one_of("proxy", "full", "off"), "DHCP mode"),
        "dhcp_port": Key(int, 67, _port, "DHCP server port (tests use others)"),
        "proxy_port": Key(int, 4011, _port, "PXE proxyDHCP port"),
        "log_level": Key(str, "info", _one_of("debug", "info", "warning", "error")),
        "ltsp_compat": Key(bool, False, help="also serve an existing LTSP tree"),
        "ltsp_root": Key(str, "/srv/ltsp"),
        "ltsp_tftp_root": Key(str, "/srv/tftp/ltsp"),
    },
    "boot": {
        "default_image": Key(str, "", help="image booted by default (default: first image)"),
        "menu_timeout": Key(int, 5, _non_negative, "menu timeout in seconds; 0 boots at once"),
        "method": Key(str, "http", _one_of("http", "nfs"), "how clients get the image"),
        "kernel_params": Key(str, "", help="extra kernel parameters for every client"),
        "nfs_server": Key(str, "", _ipv4_or_empty, "NFS server (default: this server)"),
        "nfs_root": Key(str, "", help="NFS export holding the served root (default: root)"),
        "to_ram": Key(bool, True, help="copy the image to RAM (NFS method)"),
        "transfer": Key(
            str, "http", _one_of("http", "multicast"), "HTTP method: plain or udpcast multicast"
        ),
        "multicast_portbase": Key(int, 9000, _port, "first UDP port of udpcast sessions"),
        "multicast_sessions": Key(int, 4, _positive, "udpcast sessions at once (2 ports each)"),
        "multicast_window": Key(int, 5, _positive, "seconds clients may join one session"),
        "multicast_max_bitrate": Key(str, "", help="udp-sender --max-bitrate (e.g. 90m)"),
        "multicast_rdv_address": Key(
            str, "", _routable_group_or_empty, "udpcast rendez-vous group (empty: link-local)"
        ),
        "multicast_data_address": Key(
            str, "", _routable_group_or_empty, "udpcast data group (empty: udpcast derives it)"
        ),
        "multicast_ttl": Key(int, 32, _between(1, 255), "TTL of udpcast packets"),
        "loader": Key(str, "ipxe", _one_of("ipxe", "grub"), "UEFI boot loader: ipxe or grub"),
        "api": Key(str, "", _http_url_or_empty, "pixiecore-style boot API deciding each boot"),
        "api_proxy": Key(bool, True, help="clients fetch the API's files through netboot"),
        "memdisk": Key(str, "/usr/lib/syslinux/memdisk", help="syslinux's memdisk binary"),
    },
    "ipxe": {
        "bios": Key(str, "undionly.kpxe", help="BIOS (arch 0) boot file"),
        "efi_ia32": Key(str, "snponly-ia32.efi", help="IA32 EFI (arch 6) boot file"),
        "efi_x64": Key(str, "snponly.efi", help="x64 EFI (arch 7, 9) boot file"),
        "efi_x64_fallback": Key(str, "ipxe.efi", help="used when efi_x64 is missing"),
        "efi_arm64": Key(str, "snponly-arm64.efi", help="arm64 EFI (arch 11) boot file"),
        "http_x64": Key(str, "ipxe.efi", help="UEFI HTTP Boot (arch 16) file"),
        "binaries_dir": Key(str, "/usr/lib/ipxe", help="where the iPXE binaries come from"),
        "script": Key(str, "boot.ipxe", help="boot script template: a name in ipxe/ or a path"),
    },
    "grub": {
        "shim_x64": Key(str, "/usr/lib/shim/shimx64.efi.signed", help="signed x64 shim"),
        "grub_x64": Key(
            str, "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", help="signed x64 GRUB"
        ),
        "shim_arm64": Key(str, "/usr/lib/shim/shimaa64.efi.signed", help="signed arm64 shim"),
        "grub_arm64": Key(
            str, "/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed", help="signed arm64 GRUB"
        ),
    },
    "dhcp": {
        "range_start": Key(str, "", _ipv4_or_empty, "first address of the pool"),
        "range_end": Key(str, "", _ipv4_or_empty, "last address of the pool"),
        "netmask": Key(str, "", _ipv4_or_empty),
        "router": Key(str, "", _ipv4_or_empty),
        "dns": Key(list, [], _ipv4_list, "DNS servers"),
        "domain": Key(str, ""),
        "lease_time": Key(int, 3600, _positive, "lease time in seconds"),
        "lease_file": Key(str, "/var/lib/netboot/leases.json"),
        "probe": Key(bool, True, help="ARP-probe an address before offering it"),
        "force": Key(bool, False, help="start even if another DHCP server answers"),
        "decline_time": Key(int, 600, _positive, "seconds a declined address stays unused"),
        "reservations": Key(dict, {}, help="MAC -> {address, hostname}"),
        "subnets": Key(
            dict, {}, help="relayed subnet -> {range_start, range_end, ...}", flag=False
        ),
    },
    "image": {
        "base_dir": Key(str, "/srv/ltsp", help="where image sources are looked up by name"),
        "excludes_add": Key(list, [], _str_list, "extra mksquashfs exclude patterns"),
        "excludes_remove": Key(list, [], _str_list, "default excludes to drop"),
        "mksquashfs_params": Key(str, "-comp zstd -Xcompression-level 15 -b 1M"),
        "ionice": Key(str, "", help="command prefix for mksquashfs (default: nice ionice -c3)"),
        "keep_versions": Key(int, 3, _positive, "published versions kept per image"),
        "in_use_days": Key(
            int, 30, _non_negative, "never prune a version a client booted this recently"
        ),
    },
}

CLIENT_KEYS: dict[str, Key] = {
    "hostname": Key(str, ""),
    "image": Key(str, ""),
    "kernel_params": Key(str, ""),
    "loader": Key(str, "", _one_of("", "ipxe", "grub")),
    "root_password_hash": Key(str, ""),
    "transfer": Key(str, "", _one_of("", "http", "multicast")),
}

# `[entries.NAME]`: a boot entry of the config (netboot/boot/entries.py builds it). Exactly
# one of kernel, chain and iso says what it boots; initrd and cmdline go with kernel.
ENTRY_KEYS: dict[str, Key] = {
    "title": Key(str, "", help="the menu label (default: the entry's name)"),
    "kernel": Key(str, "", help="a path under the served root, or an http(s) URL"),
    "initrd": Key(list, [], _str_list, "initrds: paths or URLs, in order"),
    "cmdline": Key(str, "", help="the kernel command line"),
    "chain": Key(str, "", help="another iPXE script or EFI binary: path or URL"),
    "iso": Key(str, "", help="an ISO image booted with iPXE's sanboot: path or URL"),
    "iso_method": Key(
        str, "sanboot", _one_of("sanboot", "memdisk"), "sanboot, or memdisk (BIOS only)"
    ),
}
ENTRY_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

# `[dhcp.subnets."10.1.2.0/24"]`: a pool for clients behind a relay (netboot/dhcp/subnets.py
# checks the addresses against the subnet when full DHCP starts)
SUBNET_KEYS: dict[str, Key] = {
    "range_start": Key(str, "", _ipv4_or_empty),
    "range_end": Key(str, "", _ipv4_or_empty),
    "router": Key(str, "", _ipv4_or_empty),
    "dns": Key(list, [], _ipv4_list),
    "domain": Key(str, ""),
}

RESERVATION_KEYS: dict[str, Key] = {
    "address": Key(str, "", _ipv4_or_empty),
    "hostname": Key(str, ""),
}


def _section_type(name: str, keys: dict[str, Key]) -> type:
    """A frozen dataclass with one typed field per schema key: `config.server.http_port`."""
    fields = [(key, spec.type, field(default=None)) for key, spec in keys.items()]
    return make_dataclass(f"{name.title()}Settings", fields, frozen=True)


# section name -> its frozen settings class, generated from SCHEMA (never written twice)
SECTION_TYPES: dict[str, type] = {name: _section_type(name, keys) for name, keys in SCHEMA.items()}


@dataclass(frozen=True)
class ClientTable:
    """`[clients]`: settings for every client, and per-MAC sections laid over them."""

    defaults: Mapping[str, Any] = field(default_factory=dict)
    by_mac: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def settings(self, mac: str) -> dict[str, Any]:
        """The defaults overlaid with the section of this MAC (only keys that were given)."""
        merged = dict(self.defaults)
        merged.update(self.by_mac.get(mac.lower(), {}))
        return merged


@dataclass(frozen=True)
class Config:
    """Validated settings, one frozen object per section (`config.boot.menu_timeout`)."""

    server: Any
    boot: Any
    ipxe: Any
    grub: Any
    dhcp: Any
    image: Any
    clients: ClientTable = field(default_factory=ClientTable)
    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "defaults"

    def client_settings(self, mac: str) -> dict[str, Any]:
        """The `[clients]` settings of one machine."""
        return self.clients.settings(mac)

    @property
    def root(self) -> Path:
        return Path(self.server.root)

    @property
    def tftp_root(self) -> Path:
        return Path(self.server.tftp_root or self.server.root)

    def with_values(self, values: Mapping[str, Any]) -> Config:
        """A copy with some keys changed (dotted key -> already checked value)."""
        sections: dict[str, dict[str, Any]] = {}
        for dotted, value in values.items():
            section, key = dotted.split(".", 1)
            sections.setdefault(section, {})[key] = value
        changed = {name: replace(getattr(self, name), **keys) for name, keys in sections.items()}
        return replace(self, **changed)


def _check_clients(table: Mapping[str, Any], source: str) -> ClientTable:
    default: dict[str, Any] = {}
    per_mac: dict[str, dict[str, Any]] = {}
    for name, value in table.items():
        if isinstance(value, dict):
            mac, values = _mac_section(
                f"clients.{name}", name, value, CLIENT_KEYS, source, "section name"
            )
            per_mac[mac] = values
        elif name in CLIENT_KEYS:
            default[name] = _check_value(f"clients.{name}", CLIENT_KEYS[name], value, source)
        else:
            raise ConfigError(f"clients.{name}", source, "unknown key")
    return ClientTable(default, per_mac)


def _entry_location(key: str, value: str, source: str) -> None:
    """A path under the served root (no '..', no spaces) or an http(s) URL."""
    if "://" in value:
        if not value.startswith(("http://", "https://")):
            raise ConfigError(key, source, "a URL must be http:// or https://")
    elif value.startswith("/") or ".." in value.split("/") or re.search(r"\s", value):
        raise ConfigError(key, source, "must be a path under the served root or a URL")


def _check_entries(table: Any, source: str) -> dict[str, dict[str, Any]]:
    """`[entries.NAME]` tables: known keys, one thing to boot, locations that stay inside
    the served root. Returns name -> every key of ENTRY_KEYS (defaults filled in)."""
    if not isinstance(table, dict):
        raise ConfigError("entries", source, "must be a table of tables")
    result: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        key = f"entries.{name}"
        if not ENTRY_NAME_RE.match(name):
            raise ConfigError(key, source, "name may hold letters, digits, '_', '.', '-' only")
        if not isinstance(entry, dict):
            raise ConfigError(key, source, f"must be a table of {', '.join(ENTRY_KEYS)}")
        values = {item: spec.default for item, spec in ENTRY_KEYS.items()}
        for item, value in entry.items():
            if item not in ENTRY_KEYS:
                raise ConfigError(f"{key}.{item}", source, "unknown key")
            values[item] = _check_value(f"{key}.{item}", ENTRY_KEYS[item], value, source)
        boots = [item for item in ("kernel", "chain", "iso") if values[item]]
        if len(boots) != 1:
            raise ConfigError(key, source, "needs exactly one of kernel, chain, iso")
        if boots != ["kernel"] and (values["initrd"] or values["cmdline"]):
            raise ConfigError(key, source, "initrd and cmdline go with kernel only")
        if boots != ["iso"] and values["iso_method"] != "sanboot":
            raise ConfigError(f"{key}.iso_method", source, "goes with iso only")
        for item in ("kernel", "chain", "iso"):
            if values[item]:
                _entry_location(f"{key}.{item}", values[item], source)
        for index, initrd in enumerate(values["initrd"]):
            _entry_location(f"{key}.initrd[{index}]", initrd, source)
        result[name] = values
    return result


def _check_subnets(value: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Keys and types only: netboot/dhcp/subnets.py checks the addresses at start."""
    return {name: _keyed_table(f"dhcp.subnets.{name}", table, SUBNET_KEYS, source)
            for name, table in value.items()}  # fmt: skip


def _check_reservations(value: dict[str, Any], source: str) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for name, entry in value.items():
        mac, given = _mac_section(
            f"dhcp.reservations.{name}", name, entry, RESERVATION_KEYS, source, "name"
        )
        result[mac] = {key: given.get(key, "") for key in RESERVATION_KEYS}
    return result


def _checked(dotted: str, value: Any, source: str) -> Any:
    section, key = dotted.split(".", 1)
    value = _check_value(dotted, SCHEMA[section][key], value, source)
    if dotted == "dhcp.reservations":
        value = _check_reservations(value, source)
    elif dotted == "dhcp.subnets":
        value = _check_subnets(value, source)
    return value


def defaults() -> Config:
    """Every key at its default (lists and tables copied, so no two configs share one)."""
    sections = {
        name: SECTION_TYPES[name](
            **{
                key: type(spec.default)(spec.default)
                if isinstance(spec.default, (list, dict))
                else spec.default
                for key, spec in keys.items()
            }
        )
        for name, keys in SCHEMA.items()
    }
    return Config(**sections)


def parse(data: Mapping[str, Any], source: str) -> Config:
    """Validate a decoded TOML document against the schema."""
    values: dict[str, Any] = {}
    clients = ClientTable()
    entries: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section == "entries":
            entries = _check_entries(table, source)
            continue
        if section == "clients":
            if not isinstance(table, dict):
                raise ConfigError("clients", source, "must be a table")
            clients = _check_clients(table, source)
            continue
        if section not in SCHEMA:
            raise ConfigError(section, source, "unknown section")
        if not isinstance(table, dict):
            raise ConfigError(section, source, "must be a table")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if key not in SCHEMA[section]:
                raise ConfigError(dotted, source, "unknown key")
            values[dotted] = _checked(dotted, value, source)
    config = defaults().with_values(values)
    return replace(config, clients=clients, entries=entries, source=source)


def load(path: Path | None) -> Config:
    """Load the config file; with no path, the default file if it exists, else defaults."""
    if path is None:
        if not DEFAULT_CONFIG_FILE.exists():
            return defaults()
        path = DEFAULT_CONFIG_FILE
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("--config", source, exc.strerror or str(exc)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("(syntax)", source, str(exc)) from None
    return parse(data, source)


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Command-line values (dotted key -> value; None means 'not given') laid over `config`;
    returns the new config."""
    given = {
        dotted: _checked(dotted, value, "command line")
        for dotted, value in overrides.items()
        if value is not None
    }
    return config.with_values(given)


def load_for_command(path: Path | None, overrides: Mapping[str, Any]) -> Config:
    """The config file (or defaults) with a command's flags applied: what every subcommand
    starts from. Raises ConfigError, whose str() is the one line to print."""
    return apply_overrides(load(path), overrides)
