"""Real QEMU clients network-boot the test image from `netboot serve` (proxy DHCP next to the
site's own DHCP server), BIOS and UEFI, virtio-net and e1000."""

from __future__ import annotations

import pytest
from vmbed.checks import check_image_boot, check_record, wait_for_marker
from vmbed.config import VmServe
from vmbed.image import TestImage
from vmbed.run import BOOT_TIMEOUT, E1000_MACS, VmRun

CLIENTS = [
    pytest.param("bios", "virtio-net-pci", id="bios-virtio"),
    pytest.param("uefi", "virtio-net-pci", id="uefi-virtio"),
    pytest.param("bios", "e1000", id="bios-e1000"),
    pytest.param("uefi", "e1000", id="uefi-e1000"),
]


@pytest.mark.parametrize(("firmware", "nic"), CLIENTS)
def test_client_boots_published_image(
    vm: VmRun, proxy_server: VmServe, request: pytest.FixtureRequest, firmware: str, nic: str
) -> None:
    # e1000 clients boot the generic-kernel image (their per-client `image` setting)
    e1000 = nic == "e1000"
    image: TestImage = request.getfixturevalue("generic_image" if e1000 else "test_image")
    published = image.current()
    client = vm.boot(proxy_server, firmware, nic, mac=E1000_MACS[firmware] if e1000 else None)
    mac = client.spec.mac

    marker = wait_for_marker(client, BOOT_TIMEOUT)
    booted = check_image_boot(marker, image, mac)
    assert booted.version == published.version, "booted another version than the current one"
    assert client.wait_exit(60) == 0, "the image's init did not power the client off"

    record = proxy_server.client(mac)
    check_record(record, mac, tftp=client.spec.native_pxe, version=booted)
    assert record["facts"]["firmware"] == ("bios" if firmware == "bios" else "efi-x64")
    first_dhcp = next(e for e in record["events"] if e["kind"] in ("dhcp-offer", "proxy-ack"))
    # native PXE asks first and is sent iPXE; an iPXE ROM is sent the script at once
    assert first_dhcp["ipxe"] is (not client.spec.native_pxe), first_dhcp
    print(f"{firmware}/{nic}: power-on to image init {client.elapsed():.0f} s")
