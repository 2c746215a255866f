"""`boot.transfer = "multicast"`: three QEMU BIOS clients powered on together get the image
from one udp-sender and reach the image's own init; a client whose server cannot start a
sender (udp-sender not on its PATH) still boots, over HTTP, and says why on its console."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmbed.checks import check_image_boot, wait_for_marker
from vmbed.config import VmServe, running, write_config
from vmbed.image import TestImage
from vmbed.network import network
from vmbed.run import BOOT_TIMEOUT, IMAGE_NAME, SERIAL_CONSOLE, VmRun

# clients powered on together reach the initrd seconds apart under TCG: a wide window
MULTICAST = 'transfer = "multicast"\nmulticast_window = 40\n'
VIA_MULTICAST = "netboot: image received by multicast and verified"


def multicast_config(net_dir: Path) -> Path:
    return write_config(
        net_dir / "netboot.toml",
        default_image=IMAGE_NAME,
        kernel_params=SERIAL_CONSOLE,
        extra=MULTICAST,  # no [clients]: these lines are still in [boot]
    )


def path_without(tmp: Path, program: str) -> str:
    """A PATH with every program of the system's PATH but `program` (symlinks)."""
    farm = tmp / "bin"
    farm.mkdir(exist_ok=True)
    for directory in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if name != program and not (farm / name).exists():
                (farm / name).symlink_to(Path(directory) / name)
    return str(farm)


@pytest.fixture(scope="module")
def multicast_server(vm_workdir: Path, test_image: TestImage) -> Iterator[VmServe]:
    with network(vm_workdir / "lan-multicast", foreign_dhcp=True) as net:
        config = multicast_config(net.workdir)
        server = VmServe(net, test_image.root, config, net.workdir / "server.log")
        with running(server):
            yield server


@pytest.fixture(scope="module")
def senderless_server(vm_workdir: Path, test_image: TestImage) -> Iterator[VmServe]:
    with network(vm_workdir / "lan-no-sender", foreign_dhcp=True) as net:
        config = multicast_config(net.workdir)
        server = VmServe(net, test_image.root, config, net.workdir / "server.log")
        server.args = ["env", f"PATH={path_without(net.workdir, 'udp-sender')}", *server.args]
        with running(server):
            yield server


def test_three_clients_share_one_multicast_session(
    vm: VmRun, multicast_server: VmServe, test_image: TestImage
) -> None:
    clients = [vm.boot(multicast_server, "bios", "virtio-net-pci") for _ in range(3)]
    for client in clients:
        marker = wait_for_marker(client, BOOT_TIMEOUT)
        check_image_boot(marker, test_image, client.spec.mac)
        assert VIA_MULTICAST in client.text(), client.tail()
        assert marker.cmdline.get("netboot.transfer") == "multicast", marker.cmdline
    stats = multicast_server.api("/api/stats")
    assert stats["multicast"]["started"] == 1, stats  # one sender for the three
    assert stats["multicast"]["offered"] == 3, stats


def test_client_that_cannot_join_boots_over_http(
    vm: VmRun, senderless_server: VmServe, test_image: TestImage
) -> None:
    client = vm.boot(senderless_server, "bios", "virtio-net-pci")
    marker = wait_for_marker(client, BOOT_TIMEOUT)
    check_image_boot(marker, test_image, client.spec.mac)
    text = client.text()
    assert "multicast failed, using HTTP: server declined: udp-sender is not installed" in text
    assert "netboot: image fetched and verified" in text
    assert VIA_MULTICAST not in text
