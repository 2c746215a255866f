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


@pytest.mark.root  # netboot image
def test_kernel_without_modules_dep_gets_depmod_in_the_overlay(served: Served) -> None:
    """Issue 12: a chroot whose kernel has no modules.dep (depmod never ran) ended in a
    traceback from standalone.modules_dir; now depmod -b runs in the build overlay, the
    source tree stays as it was."""
    kernel = cloud_kernel()
    tree = make_chroot(served.base / "nodep", kernels=False)
    (tree / "boot").mkdir(exist_ok=True)
    shutil.copy2(kernel.vmlinuz, tree / "boot" / f"vmlinuz-{kernel.version}")
    modules = tree / "lib" / "modules" / kernel.version
    shutil.copytree(kernel.modules, modules, symlinks=True)
    for generated in modules.glob("modules.*"):
        if generated.name not in ("modules.order", "modules.builtin"):
            generated.unlink()
    result = served.image("-m=-comp gzip", "nodep", timeout=600)  # ~165 s at load 35
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "ran depmod -b" in result.stderr
    assert f"built standalone.img for {kernel.version}" in result.stderr
    assert not (modules / "modules.dep").exists()  # the source is not written to
    assert (served.current("nodep") / layout.STANDALONE_INITRD).is_file()
