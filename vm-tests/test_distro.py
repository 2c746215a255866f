"""A real distribution (make vm-test-full): debootstrapped Debian bookworm with its own
initramfs-tools initrd plus netboot's add-on, booted over HTTP to systemd's multi-user.target,
with the root password hash from the server's client settings in effect."""

from __future__ import annotations

import subprocess
import sys

import pytest
from vmbed.checks import boot_to_report, check_record, parse_cmdline
from vmbed.config import VmServe
from vmbed.distro import DISTRO_MARKER_RE, bookworm_chroot
from vmbed.image import TestImage
from vmbed.run import DISTRO_IMAGE_NAME, DISTRO_MAC, VmRun

DISTRO_BOOT_TIMEOUT = 1200  # systemd under TCG, a ~200 MB squashfs over emulated virtio


@pytest.fixture(scope="module")
def distro_image(test_image: TestImage) -> TestImage:
    log = test_image.log
    chroot = bookworm_chroot(log)
    image = TestImage(test_image.root, chroot.parent, DISTRO_IMAGE_NAME, log)
    published = image.republish()  # a new stamp, then `netboot image`
    assert published.directory.joinpath("initrd.img").is_file(), "no initrd.img published"
    with open(log, "ab") as out:  # the add-on initrd, ROOT/netboot.img
        subprocess.run([sys.executable, "-m", "netboot", "initrd", "--root", str(image.root)],
                       stdout=out, stderr=subprocess.STDOUT, check=True, timeout=600)  # fmt: skip
    assert (image.root / "netboot.img").is_file()
    return image


@pytest.mark.vm_full
def test_debian_reaches_multi_user_with_client_settings(
    vm: VmRun, proxy_server: VmServe, distro_image: TestImage, root_password_hash: str
) -> None:
    published = distro_image.current()
    client, report = boot_to_report(vm, proxy_server, DISTRO_MARKER_RE, published.stamp,
                                    mac=DISTRO_MAC, name="bookworm",
                                    timeout=DISTRO_BOOT_TIMEOUT)  # fmt: skip
    assert report["hash"] == root_password_hash, "root_password_hash not applied"
    cmdline = parse_cmdline(client.text().split("Command line:", 1)[-1].splitlines()[0])
    assert cmdline.get("netboot.version") == published.version, cmdline
    assert client.wait_exit(120) == 0

    check_record(proxy_server.client(DISTRO_MAC), DISTRO_MAC, tftp=False, version=published,
                 initrd="initrd.img", addon=True)  # fmt: skip
