"""Boot entries beside the images: a QEMU BIOS client boots the Debian installer's netboot
kernel and initrd and reaches the installer's first dialog, once from a config entry (chosen
by the client's MAC) and once decided by a pixiecore-style boot API (API mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vmbed import run
from vmbed.config import VmServe, running, write_config
from vmbed.image import TestImage
from vmbed.network import network
from vmbed.run import BOOT_TIMEOUT, INSTALLER_MAC, VmRun

from testbed.bootapi import BootApi

# the installer's first dialog (language selection, newt frontend on the serial console)
FIRST_DIALOG = r"Select a language|Choose the language"
API_PORT = 8799


def test_bios_client_boots_the_installer_entry(vm: VmRun, proxy_server: VmServe) -> None:
    client = vm.boot(proxy_server, "bios", "virtio-net-pci", mac=INSTALLER_MAC, memory_mb=1024)
    client.wait_for(r"netboot: booting Debian 12 installer", BOOT_TIMEOUT)
    client.wait_for(FIRST_DIALOG, BOOT_TIMEOUT)

    record = proxy_server.client(INSTALLER_MAC)
    kinds = [event["kind"] for event in record["events"]]
    assert "script" in kinds, kinds
    fetched = [e["file"] for e in record["events"] if e["kind"] == "file"]
    assert fetched[:2] == ["di/linux", "di/initrd.gz"], fetched
    print(
        f"installer entry {run.INSTALLER_ENTRY}: power-on to first dialog {client.elapsed():.0f} s"
    )


@pytest.fixture(scope="module")
def api_server(vm_workdir: Path, test_image: TestImage) -> Iterator[tuple[VmServe, BootApi]]:
    """Its own LAN (the session's proxy server would answer the same client): the boot API
    beside netboot in API mode; the API serves the installer files itself."""
    with network(vm_workdir / "lan-api", foreign_dhcp=True) as net:
        api = BootApi(net.srv, net.server_ip, API_PORT, [INSTALLER_MAC], run.INSTALLER_DIR,
                      net.workdir / "api.log", cmdline=run.SERIAL_CONSOLE).start()  # fmt: skip
        try:
            config = write_config(
                net.workdir / "netboot.toml", default_image=run.IMAGE_NAME, kernel_params=""
            )
            server = VmServe(net, test_image.root, config, net.workdir / "server.log",
                             extra=("--boot-api", api.url))  # fmt: skip
            with running(server):
                yield server, api
        finally:
            api.stop()


def test_bios_client_boots_the_installer_from_the_boot_api(
    vm: VmRun, api_server: tuple[VmServe, BootApi]
) -> None:
    server, api = api_server
    client = vm.boot(server, "bios", "virtio-net-pci", mac=INSTALLER_MAC, memory_mb=1024)
    client.wait_for(r"netboot: booting Booting the installer \(boot API\)", BOOT_TIMEOUT)
    client.wait_for(FIRST_DIALOG, BOOT_TIMEOUT)

    asked = [r for r in api.requests() if r["path"].startswith("/v1/boot/")]
    assert asked and asked[0]["path"] == f"/v1/boot/{INSTALLER_MAC}", asked
    record = server.client(INSTALLER_MAC)
    assert any(e["kind"] == "boot-api" and e["ours"] for e in record["events"]), record
    # kernel and initrd came through netboot's file proxy (sealed names), from the API's URLs
    proxied = [e["file"] for e in record["events"] if e["kind"] == "api-file"]
    assert proxied[:2] == [f"{api.url}/files/linux", f"{api.url}/files/initrd.gz"], record
    print(f"API mode: power-on to first dialog {client.elapsed():.0f} s")
