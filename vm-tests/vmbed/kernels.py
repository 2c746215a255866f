"""A kernel that drives QEMU's e1000: Debian's generic kernel, trimmed to the boot modules.

The cloud kernel the other tests use has no e1000 driver at all (CONFIG_E1000 is not set),
so e1000 clients get their own image with the generic kernel. Only the modules a network
boot needs (and their dependencies, from modules.dep) are kept, so the image stays as small
as the cloud one. Downloaded once with `apt-get download` and cached like tests/support/kernel.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from support.kernel import CACHE, download_deb, resolve_package

from netboot.image.standalone import resolve_modules

META_PACKAGE = "linux-image-amd64"
BOOT_MODULES = ("e1000", "e1000e", "virtio_net", "virtio_pci", "af_packet", "loop", "squashfs",
                "overlay")  # fmt: skip


@dataclass(frozen=True)
class Kernel:
    root: Path  # holds boot/vmlinuz-VERSION and lib/modules/VERSION
    version: str


def generic_kernel() -> Kernel:
    """Debian's generic kernel with only its boot modules; cached after the first call."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for tree in sorted(CACHE.glob("generic-boot-*")):
            versions = list((tree / "lib" / "modules").glob("*"))
            if (tree / ".complete").exists() and versions:
                return Kernel(tree, versions[0].name)
        package = resolve_package(META_PACKAGE, r"linux-image-\d\S+-amd64")
        deb = download_deb(package)
        version = package.removeprefix("linux-image-")
        tree = CACHE / f"generic-boot-{version}"
        shutil.rmtree(tree, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            full = Path(tmp)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(full)], check=True)
            subprocess.run(["depmod", "-b", str(full), version], check=True)
            source = full / "lib/modules" / version
            target = tree / "lib/modules" / version
            target.mkdir(parents=True)
            for rel in resolve_modules(source, BOOT_MODULES):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / rel, target / rel)
            for meta in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
                if (source / meta).exists():
                    shutil.copy2(source / meta, target / meta)
            (tree / "boot").mkdir()
            shutil.copy2(full / "boot" / f"vmlinuz-{version}", tree / "boot")
        subprocess.run(["depmod", "-b", str(tree), version], check=True)
        (tree / ".complete").touch()
        # the .deb is kept: a later re-extraction needs no download
        return Kernel(tree, version)
