"""ISO entries booted with syslinux's memdisk (`iso_method = "memdisk"`): BIOS clients get
`kernel memdisk iso raw` + `initrd <the ISO>` (as netboot.xyz does), UEFI clients are not
offered the entry (memdisk is a BIOS program), and netboot serves the memdisk binary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netboot import config as config_mod
from netboot.boot import BootPolicy, ClientFacts, ipxe
from netboot.boot.menu import KIND_MEMDISK, KIND_SANBOOT
from testbed.lan import Lan

SERVER = "192.0.2.1"
MAC = "52:54:00:00:00:02"
ENTRIES: dict[str, Any] = {
    "tools": {"title": "Tools ISO", "iso": "isos/tools.iso", "iso_method": "memdisk"},
    "rescue": {"title": "Rescue ISO", "iso": "https://mirror.example/rescue.iso"},
}


def policy(tmp_path: Path, default: str = "tools") -> BootPolicy:
    data = {"server": {"root": str(tmp_path)}, "entries": ENTRIES,
            "boot": {"default_image": default}}  # fmt: skip
    return BootPolicy(config_mod.parse(data, "test.toml"), SERVER, 8080)


def test_memdisk_is_an_iso_method(tmp_path: Path) -> None:
    kinds = {e.name: e.kind for e in policy(tmp_path).entries()}
    assert kinds == {"tools": KIND_MEMDISK, "rescue": KIND_SANBOOT}


def test_bios_client_boots_the_iso_with_memdisk(tmp_path: Path) -> None:
    menu = policy(tmp_path).menu(ClientFacts(MAC, ipxe=True, platform="pcbios"))
    assert menu.default is not None and menu.default.name == "tools"
    script = ipxe.menu_script(menu)
    assert "item img-tools Tools ISO" in script
    block = script[script.index(":img-tools\n") :].split("\n\n")[0]
    assert block.splitlines()[2:] == [
        "imgfree",
        "kernel http://192.0.2.1:8080/_/memdisk iso raw || goto failed",
        "initrd http://192.0.2.1:8080/isos/tools.iso || goto failed",
        "boot || goto failed",
    ]
    assert "sanboot --no-describe https://mirror.example/rescue.iso" in script


def test_uefi_client_is_not_offered_memdisk(tmp_path: Path) -> None:
    menu = policy(tmp_path).menu(ClientFacts(MAC, ipxe=True, platform="efi"))
    assert [e.name for e in menu.entries] == ["rescue"]
    assert menu.default is not None and menu.default.name == "rescue"  # not the memdisk one
    script = ipxe.menu_script(menu)
    assert "item --gap -- Tools ISO (not offered: memdisk needs BIOS)" in script
    assert "img-tools" not in script and "memdisk iso raw" not in script
    # a GRUB client (UEFI) has no memdisk entry either
    assert "img-tools" not in "".join(
        policy(tmp_path).tftp_file(f"grub/clients/{MAC}.cfg").decode()
    )


@pytest.mark.parametrize(
    ("entry", "key", "problem"),
    [
        ({"kernel": "k", "iso_method": "memdisk"}, "entries.a.iso_method", "goes with iso only"),
        ({"chain": "c", "iso_method": "memdisk"}, "entries.a.iso_method", "goes with iso only"),
        ({"iso": "i.iso", "iso_method": "floppy"}, "entries.a.iso_method", "sanboot"),
    ],
)
def test_bad_iso_method_names_the_key(entry: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(config_mod.ConfigError) as caught:
        config_mod.parse({"entries": {"a": entry}}, "site.toml")
    assert caught.value.key == key and problem in str(caught.value)


@pytest.mark.netns
def test_server_serves_syslinuxs_memdisk(lan: Lan, tmp_path: Path) -> None:
    binary = Path(config_mod.SCHEMA["boot"]["memdisk"].default)
    assert binary.is_file(), "install syslinux-common (bootstrap.sh DEBS)"
    out = tmp_path / "memdisk"
    got = lan.serve.curl("/_/memdisk", "-f", "-o", str(out), ns=lan.client_ns)
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == binary.read_bytes()
