"""An image whose tree has a kernel and modules but no initramfs gets netboot's standalone
initramfs at publish time, built from the image's own modules (Debian's cloud kernel)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from netboot import layout
from testbed.image_source import Served, make_chroot
from testbed.kernel import cloud_kernel


@pytest.mark.root  # netboot image
def test_image_without_initramfs_gets_standalone_initrd(served: Served) -> None:
    kernel = cloud_kernel()
    tree = make_chroot(served.base / "tiny", kernels=False)
    (tree / "boot").mkdir(exist_ok=True)
    shutil.copy2(kernel.vmlinuz, tree / "boot" / f"vmlinuz-{kernel.version}")
    shutil.copytree(kernel.modules, tree / "lib" / "modules" / kernel.version, symlinks=True)
    result = served.image("-m=-comp gzip", "tiny")
    assert result.returncode == 0, result.stderr
    assert f"built standalone.img for {kernel.version}" in result.stderr
    assert f"kernel {kernel.version}, standalone.img," in result.stdout + result.stderr
    version = served.current("tiny")
    manifest = json.loads((version / layout.MANIFEST).read_text())
    assert manifest["standalone_initrd"] is True
    assert manifest["kernel_version"] == kernel.version
    assert (version / layout.KERNEL).read_bytes() == kernel.vmlinuz.read_bytes()
    assert not (version / layout.INITRD).exists()
    standalone = version / layout.STANDALONE_INITRD
    unpacked = subprocess.run(
        f"zcat -f {standalone} | cpio -t 2>/dev/null || zstdcat {standalone} | cpio -t",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "init" in unpacked.split()
    assert any(name.endswith("/virtio_net.ko") for name in unpacked.split()), unpacked[:2000]
    assert any(name.endswith("/squashfs.ko") for name in unpacked.split())
