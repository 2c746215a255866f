"""An ISO entry booted with memdisk (`iso_method = "memdisk"`): a QEMU BIOS client loads
syslinux's memdisk from netboot with the whole ISO as its initrd; memdisk emulates a CD in
RAM, ISOLINUX on it boots the Debian installer's kernel and initrd to the first dialog.
The ISO is built here with xorriso and ISOLINUX (packages xorriso, isolinux)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmbed.config import VmServe, running, write_config
from vmbed.image import TestImage
from vmbed.network import network
from vmbed.run import BOOT_TIMEOUT, INSTALLER_DIR, SERIAL_CONSOLE, VmRun, new_mac

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
FIRST_DIALOG = r"Select a language|Choose the language"
ISOLINUX_CFG = f"""serial 0 115200
default di
prompt 0
timeout 0
say netboot-test: ISOLINUX runs from the memdisk CD
label di
  kernel /linux
  append initrd=/initrd.gz {SERIAL_CONSOLE} priority=high
"""


def build_iso(tree: Path, out: Path) -> None:
    """A BIOS-bootable ISO (El Torito, no emulation): ISOLINUX, the installer's kernel and
    initrd. Nothing is read from the CD after the initrd: it boots from RAM alone, which is
    what memdisk can offer a Linux ISO."""
    if not ISOLINUX.is_file() or shutil.which("xorriso") is None:
        raise RuntimeError("this test needs xorriso and isolinux (run ./bootstrap.sh setup)")
    (tree / "isolinux").mkdir(parents=True)
    shutil.copyfile(ISOLINUX, tree / "isolinux" / "isolinux.bin")
    shutil.copyfile(LDLINUX, tree / "isolinux" / "ldlinux.c32")
    (tree / "isolinux" / "isolinux.cfg").write_text(ISOLINUX_CFG)
    for name in ("linux", "initrd.gz"):
        shutil.copyfile(INSTALLER_DIR / name, tree / name)
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(out), "-R", "-J",
         "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
         "-boot-load-size", "4", "-boot-info-table", str(tree)],
        check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def memdisk_server(vm_workdir: Path, test_image: TestImage) -> Iterator[VmServe]:
    """Its own LAN and server whose default entry is the ISO, booted with memdisk."""
    isos = test_image.root / "isos"
    isos.mkdir(exist_ok=True)
    build_iso(vm_workdir / "iso-tree", isos / "di.iso")
    with network(vm_workdir / "lan-memdisk", foreign_dhcp=True) as net:
        config = write_config(
            net.workdir / "netboot.toml",
            default_image="di-iso",
            kernel_params="",
            extra='\n[entries.di-iso]\ntitle = "Installer ISO"\niso = "isos/di.iso"\n'
            'iso_method = "memdisk"\n',
        )
        server = VmServe(net, test_image.root, config, net.workdir / "server.log")
        with running(server):
            yield server


def test_bios_client_boots_an_iso_through_memdisk(vm: VmRun, memdisk_server: VmServe) -> None:
    mac = new_mac()
    client = vm.boot(memdisk_server, "bios", "virtio-net-pci", mac=mac, memory_mb=1024)
    client.wait_for(r"netboot: booting the ISO of Installer ISO with memdisk", BOOT_TIMEOUT)
    client.wait_for(r"netboot-test: ISOLINUX runs from the memdisk CD", BOOT_TIMEOUT)
    client.wait_for(FIRST_DIALOG, BOOT_TIMEOUT)

    record = memdisk_server.client(mac)
    fetched = [e.get("file") for e in record["events"] if e["kind"] in ("kernel", "file")]
    assert fetched[:2] == ["memdisk", "isos/di.iso"], record
    print(f"memdisk ISO: power-on to first dialog {client.elapsed():.0f} s")
