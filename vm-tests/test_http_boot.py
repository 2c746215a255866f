"""UEFI HTTP Boot: OVMF with PXE switched off (fw_cfg knobs, vmbed.qemu.HTTP_BOOT_ONLY) sends
DHCP arch 16 with vendor class `HTTPClient`, is answered with the URL of iPXE, loads it over
HTTP (no TFTP at all) and iPXE boots the published image, in full DHCP mode and as proxyDHCP
beside the site's DHCP server."""

from __future__ import annotations

import pytest
from vmbed.checks import DHCP_KINDS, check_image_boot, check_record, kinds, wait_for_marker
from vmbed.config import VmServe
from vmbed.image import TestImage
from vmbed.run import BOOT_TIMEOUT, VmRun

from netboot.boot.arch import ARCH_EFI_X64_HTTP


@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_http_boot_reaches_image_init(
    vm: VmRun, request: pytest.FixtureRequest, test_image: TestImage, mode: str
) -> None:
    server: VmServe = request.getfixturevalue("full_server" if mode == "full" else "proxy_server")
    client = vm.boot(server, "uefi", "virtio-net-pci", http_boot=True)
    mac = client.spec.mac
    # the firmware's own words: its first boot option is HTTP Boot, PXE is never tried
    client.wait_for(r"Start HTTP Boot over IPv4", BOOT_TIMEOUT)
    marker = wait_for_marker(client, BOOT_TIMEOUT)
    booted = check_image_boot(marker, test_image, mac)
    assert client.wait_exit(60) == 0, "the image's init did not power the client off"
    console = client.text()
    assert "PXE" not in console.split("Start HTTP Boot", 1)[0], client.tail()

    record = server.client(mac)
    seen = check_record(record, mac, tftp=False, version=booted)
    assert "tftp" not in seen, f"HTTP Boot client used TFTP: {seen}"
    first = next(e for e in record["events"] if e["kind"] in DHCP_KINDS)
    assert first["arch"] == ARCH_EFI_X64_HTTP, first
    assert first["boot_file"].startswith(f"http://{server.net.server_ip}"), first
    assert first["boot_file"].endswith("/ipxe/ipxe.efi"), first
    assert first["ipxe"] is False, first
    if mode == "full":
        assert "dhcp-ack" in kinds(record), "netboot did not lease the address itself"
    print(f"HTTP Boot ({mode}): first DHCP answer {first}")
    print(f"HTTP Boot ({mode}): power-on to image init {client.elapsed():.0f} s")
