"""`[entries.NAME]`: boot entries of the config beside the images, on the same menu and
policy (no root, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netboot import config as config_mod
from netboot.boot import BootPolicy, ClientFacts, ipxe
from netboot.boot.menu import KIND_CHAIN, KIND_LINUX, KIND_SANBOOT

SERVER = "192.0.2.1"
MAC = "52:54:00:00:00:01"
ENTRIES: dict[str, Any] = {
    "installer": {
        "title": "Debian 12 installer",
        "kernel": "di/linux",
        "initrd": ["di/initrd.gz"],
        "cmdline": "priority=low",
    },
    "xyz": {"chain": "https://boot.netboot.xyz/menu.ipxe"},
    "rescue": {"title": "Rescue ISO", "iso": "isos/rescue.iso"},
    "remote": {"kernel": "http://198.51.100.7/k", "initrd": ["http://198.51.100.7/i?x=1"]},
}


def policy(tmp_path: Path, extra: dict[str, Any] | None = None) -> BootPolicy:
    data = {"server": {"root": str(tmp_path)}, "entries": ENTRIES, **(extra or {})}
    return BootPolicy(config_mod.parse(data, "test.toml"), SERVER, 8080)


def test_entries_are_on_the_policy_with_a_kind(tmp_path: Path) -> None:
    found = {e.name: e for e in policy(tmp_path).entries()}
    assert list(found) == ["installer", "xyz", "rescue", "remote"]
    assert [e.kind for e in found.values()] == [KIND_LINUX, KIND_CHAIN, KIND_SANBOOT, KIND_LINUX]
    assert {e.source for e in found.values()} == {"config"}
    assert found["installer"].label == "Debian 12 installer"
    assert found["xyz"].label == "xyz"
    assert found["remote"].initrds == (("i", "http://198.51.100.7/i?x=1"),)


def test_menu_renders_every_kind(tmp_path: Path) -> None:
    toml = {"boot": {"kernel_params": "console=ttyS0"}}
    menu = policy(tmp_path, toml).menu(ClientFacts(MAC, ipxe=True, platform="pcbios"))
    script = ipxe.menu_script(menu)
    assert "item img-installer Debian 12 installer" in script
    assert (
        "kernel http://192.0.2.1:8080/di/linux initrd=initrd.gz priority=low console=ttyS0"
        " || goto failed"
    ) in script
    assert "initrd --name initrd.gz http://192.0.2.1:8080/di/initrd.gz || goto failed" in script
    assert "chain https://boot.netboot.xyz/menu.ipxe || goto failed" in script
    assert "sanboot --no-describe http://192.0.2.1:8080/isos/rescue.iso || goto failed" in script
    assert "kernel http://198.51.100.7/k initrd=i " in script


@pytest.mark.parametrize("where", ["default", "client"])
def test_an_entry_can_be_the_default(tmp_path: Path, where: str) -> None:
    toml: dict[str, Any] = (
        {"boot": {"default_image": "rescue"}}
        if where == "default"
        else {"clients": {MAC: {"image": "rescue"}}}
    )
    p = policy(tmp_path, toml)
    assert p.menu(ClientFacts(MAC, ipxe=True)).default.name == "rescue"
    other = ClientFacts("52:54:00:00:00:02", ipxe=True)
    assert p.menu(other).default.name == ("rescue" if where == "default" else "installer")


@pytest.mark.parametrize(
    ("entries", "key", "problem"),
    [
        ({"a": {"kernel": "k", "colour": "x"}}, "entries.a.colour", "unknown key"),
        ({"a": {"title": "nothing"}}, "entries.a", "exactly one of kernel, chain, iso"),
        ({"a": {"kernel": "k", "iso": "i"}}, "entries.a", "exactly one of"),
        ({"a": {"chain": "c", "cmdline": "x"}}, "entries.a", "go with kernel only"),
        ({"a": {"kernel": "../etc/k"}}, "entries.a.kernel", "under the served root"),
        ({"a": {"kernel": "/etc/k"}}, "entries.a.kernel", "under the served root"),
        ({"a": {"kernel": "k\nshell"}}, "entries.a.kernel", "under the served root"),
        ({"a": {"iso": "ftp://x/y.iso"}}, "entries.a.iso", "http:// or https://"),
        ({"a": {"kernel": "k", "initrd": "i"}}, "entries.a.initrd", "must be a list"),
        ({"a": {"kernel": "k", "initrd": ["../i"]}}, "entries.a.initrd[0]", "served root"),
        ({"a b": {"kernel": "k"}}, "entries.a b", "letters, digits"),
        ({"a": "k"}, "entries.a", "must be a table"),
    ],
)
def test_bad_entries_name_the_key_and_the_file(
    entries: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(config_mod.ConfigError) as caught:
        config_mod.parse({"entries": entries}, "site.toml")
    assert caught.value.key == key
    assert problem in str(caught.value) and "(in site.toml)" in str(caught.value)
