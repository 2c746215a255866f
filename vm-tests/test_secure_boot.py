"""The Secure Boot chain: OVMF (Secure Boot on, Microsoft's keys) → native PXE → shim →
Debian's signed GRUB → the image's signed kernel → the image's own init; the same chain with
Secure Boot off; and an unsigned kernel refused under Secure Boot.

Full DHCP mode: Debian 12's GRUB takes its TFTP server from the DHCP ACK's next-server and
ignores a proxy offer (docs/secure-boot.md), so netboot must be the DHCP server here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmbed.arm64 import arm64_boot_files
from vmbed.checks import check_image_boot, kinds, wait_for_marker
from vmbed.config import VmServe, full_dhcp_section, running, write_config
from vmbed.image import TestImage, build_chroot
from vmbed.network import network
from vmbed.run import BOOT_TIMEOUT, IMAGE_NAME, SERIAL_CONSOLE, VmRun

from testbed.kernel import cloud_kernel, cloud_kernel_arm64

UNSIGNED_IMAGE = "vmtest-unsigned"
UNSIGNED_MAC = "52:54:00:4e:42:b1"
ARM64_IMAGE = "vmtest-arm64"
ARM64_MAC = "52:54:00:4e:42:a1"


def publish_with_config(image: TestImage, config: Path, env: dict | None = None) -> str:
    """`netboot image NAME` with the server's config (so it knows the GRUB loader is in use);
    returns what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "netboot", "image", "--config", str(config), "--root",
         str(image.root), "--base-dir", str(image.base_dir), "-i", "", image.name],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def grub_server(vm_workdir: Path, test_image: TestImage) -> Iterator[tuple[VmServe, dict]]:
    """`netboot serve --dhcp full` with `loader = "grub"`, and a second image whose kernel
    had its signature removed (`sbattach --remove`), booted by one client."""
    with network(vm_workdir / "lan-secureboot", foreign_dhcp=False) as net:
        config = write_config(
            net.workdir / "netboot.toml",
            default_image=IMAGE_NAME,
            kernel_params=SERIAL_CONSOLE,
            clients={UNSIGNED_MAC: {"image": UNSIGNED_IMAGE}},
            extra=full_dhcp_section(net),
            loader="grub",
        )
        kernel = cloud_kernel()
        unsigned = TestImage(test_image.root, test_image.base_dir, UNSIGNED_IMAGE,
                             test_image.log)  # fmt: skip
        build_chroot(unsigned.chroot, kernel.root, kernel.version)
        vmlinuz = unsigned.chroot / "boot" / f"vmlinuz-{kernel.version}"
        subprocess.run(["sbattach", "--remove", str(vmlinuz)], check=True, capture_output=True)
        outputs = {
            "unsigned": publish_with_config(unsigned, config),
            "signed": publish_with_config(test_image, config),
        }
        server = VmServe(net, test_image.root, config, net.workdir / "server.log", "full")
        with running(server):
            yield server, outputs


def test_netboot_image_warns_about_unsigned_kernel(grub_server: tuple[VmServe, dict]) -> None:
    _, outputs = grub_server
    warning = "the kernel is not signed"
    assert warning in outputs["unsigned"], outputs["unsigned"]
    assert warning not in outputs["signed"], outputs["signed"]
    assert "published" in outputs["unsigned"]


@pytest.mark.parametrize("secure_boot", [True, False], ids=["sb-on", "sb-off"])
def test_shim_grub_boots_signed_kernel(
    vm: VmRun, grub_server: tuple[VmServe, dict], test_image: TestImage, secure_boot: bool
) -> None:
    server, _ = grub_server
    published = test_image.current()
    client = vm.boot(server, "uefi", "virtio-net-pci", secure_boot=secure_boot)
    mac = client.spec.mac
    marker = wait_for_marker(client, BOOT_TIMEOUT)
    booted = check_image_boot(marker, test_image, mac)
    assert booted.version == published.version
    state = "enabled" if secure_boot else "disabled"
    assert f"secureboot: Secure boot {state}" in client.text()[: marker.offset], client.tail()
    assert client.wait_exit(60) == 0, "the image's init did not power the client off"

    record = server.client(mac)
    assert "dhcp-ack" in kinds(record), "netboot did not lease the address itself"
    files = [e["file"].lstrip("/") for e in record["events"] if e["kind"] == "tftp"]
    prefix = f"images/{booted.name}/versions/{booted.version}/"
    wanted = ["efi/x64/shimx64.efi", "efi/x64/grubx64.efi", "grub/grub.cfg",
              f"grub/clients/{mac}.cfg", prefix + "vmlinuz", prefix + "standalone.img"]  # fmt: skip
    assert [f for f in files if f in wanted] == wanted, files
    assert "image" in kinds(record), "the squashfs was not fetched over HTTP"
    print(f"shim/grub sb={secure_boot}: power-on to image init {client.elapsed():.0f} s")


def test_unsigned_kernel_refused_under_secure_boot(
    vm: VmRun, grub_server: tuple[VmServe, dict]
) -> None:
    server, _ = grub_server
    client = vm.boot(server, "uefi", "virtio-net-pci", mac=UNSIGNED_MAC, secure_boot=True)
    client.wait_for(r"bad shim signature", BOOT_TIMEOUT)
    assert "NBTEST-MARKER" not in client.text()
    files = [e.get("file", "") for e in server.client(UNSIGNED_MAC)["events"]]
    assert any(f.startswith(f"/images/{UNSIGNED_IMAGE}/") or
               f.startswith(f"images/{UNSIGNED_IMAGE}/") for f in files), files  # fmt: skip


@pytest.fixture(scope="module")
def arm64_server(vm_workdir: Path, test_image: TestImage) -> Iterator[tuple[VmServe, TestImage]]:
    """A full-DHCP GRUB-loader server with Debian's arm64 shim and GRUB, and an arm64 image
    (arm64 cloud kernel and busybox) for the arm64 client."""
    files = arm64_boot_files()
    with network(vm_workdir / "lan-arm64", foreign_dhcp=False) as net:
        grub_keys = (f'\n[grub]\nshim_arm64 = "{files.shim}"\n'
                     f'grub_arm64 = "{files.grub}"\n')  # fmt: skip
        config = write_config(
            net.workdir / "netboot.toml",
            default_image=IMAGE_NAME,
            kernel_params=SERIAL_CONSOLE,
            clients={ARM64_MAC: {"image": ARM64_IMAGE, "kernel_params": "console=ttyAMA0"}},
            extra=full_dhcp_section(net) + grub_keys,
            loader="grub",
        )
        kernel = cloud_kernel_arm64()
        image = TestImage(test_image.root, test_image.base_dir, ARM64_IMAGE, test_image.log)
        build_chroot(image.chroot, kernel.root, kernel.version, busybox=files.busybox)
        # the standalone initramfs must carry the arm64 busybox too
        output = publish_with_config(image, config, {"NETBOOT_BUSYBOX": str(files.busybox)})
        assert "not signed" not in output, output
        server = VmServe(net, test_image.root, config, net.workdir / "server.log", "full")
        with running(server):
            yield server, image


@pytest.mark.vm_full
@pytest.mark.parametrize("secure_boot", [True, False], ids=["sb-on", "sb-off"])
def test_arm64_shim_grub_boots_signed_kernel(
    vm: VmRun, arm64_server: tuple[VmServe, TestImage], secure_boot: bool
) -> None:
    server, image = arm64_server
    client = vm.boot(server, "uefi", "virtio-net-pci", mac=ARM64_MAC, memory_mb=1024,
                     secure_boot=secure_boot, cpu="arm64")  # fmt: skip
    marker = wait_for_marker(client, BOOT_TIMEOUT)
    booted = check_image_boot(marker, image, ARM64_MAC)
    state = "enabled" if secure_boot else "disabled"
    assert f"secureboot: Secure boot {state}" in client.text()[: marker.offset], client.tail()
    assert client.wait_exit(60) == 0, "the image's init did not power the client off"
    files = [e["file"].lstrip("/") for e in server.client(ARM64_MAC)["events"]
             if e["kind"] == "tftp"]  # fmt: skip
    assert "efi/aa64/shimaa64.efi" in files and "efi/aa64/grubaa64.efi" in files, files
    assert f"images/{ARM64_IMAGE}/versions/{booted.version}/vmlinuz" in files, files
    print(f"arm64 shim/grub sb={secure_boot}: power-on to image init {client.elapsed():.0f} s")
