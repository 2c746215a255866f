"""A config boot entry beside the images: a QEMU BIOS client, sent to it by its MAC, boots
the Debian installer's netboot kernel and initrd and reaches the installer's first dialog."""

from __future__ import annotations

from vmbed.config import VmServe
from vmbed.run import BOOT_TIMEOUT, INSTALLER_ENTRY, INSTALLER_MAC, VmRun

# the installer's first dialog (language selection, newt frontend on the serial console)
FIRST_DIALOG = r"Select a language|Choose the language"


def test_bios_client_boots_the_installer_entry(vm: VmRun, proxy_server: VmServe) -> None:
    client = vm.boot(proxy_server, "bios", "virtio-net-pci", mac=INSTALLER_MAC, memory_mb=1024)
    client.wait_for(r"netboot: booting Debian 12 installer", BOOT_TIMEOUT)
    client.wait_for(FIRST_DIALOG, BOOT_TIMEOUT)

    record = proxy_server.client(INSTALLER_MAC)
    kinds = [event["kind"] for event in record["events"]]
    assert "script" in kinds, kinds
    fetched = [e["file"] for e in record["events"] if e["kind"] == "file"]
    assert fetched[:2] == ["di/linux", "di/initrd.gz"], fetched
    print(f"installer entry {INSTALLER_ENTRY}: power-on to first dialog {client.elapsed():.0f} s")
