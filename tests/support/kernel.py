"""Debian's cloud kernel for boot tests, fetched with `apt-get download` and cached.

The cloud flavour is small and has virtio/e1000 drivers, squashfs, overlay and loop as
modules: exactly what the initramfs must load, so the tests exercise module resolution.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("NETBOOT_TEST_CACHE", "/var/cache/netboot-tests"))
META_PACKAGE = "linux-image-cloud-amd64"


@dataclass(frozen=True)
class KernelTree:
    """An extracted kernel package: `root` holds boot/ and lib/modules/VERSION/."""

    root: Path
    version: str

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version


def _package_name() -> str:
    out = subprocess.run(
        ["apt-cache", "depends", META_PACKAGE], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"Depends:\s+(linux-image-\S+-cloud-amd64)", out)
    if not match:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        out = subprocess.run(
            ["apt-cache", "depends", META_PACKAGE], capture_output=True, text=True, check=True
        ).stdout
        match = re.search(r"Depends:\s+(linux-image-\S+-cloud-amd64)", out)
    if not match:
        raise RuntimeError(f"cannot resolve {META_PACKAGE} with apt-cache depends")
    return match.group(1)


def cloud_kernel() -> KernelTree:
    """Download (once) and extract Debian's cloud kernel; safe to call from parallel tests."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for tree in sorted(CACHE.glob("tree-*")):
            versions = list((tree / "lib" / "modules").glob("*"))
            if (tree / ".complete").exists() and versions:
                return KernelTree(tree, versions[0].name)
        package = _package_name()
        debs = list(CACHE.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(
                ["apt-get", "download", package], cwd=CACHE, check=True, capture_output=True
            )
            debs = list(CACHE.glob(f"{package}_*.deb"))
        version = package.removeprefix("linux-image-")
        tree = CACHE / f"tree-{version}"
        subprocess.run(["rm", "-rf", str(tree)], check=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True)
        subprocess.run(["depmod", "-b", str(tree), version], check=True)
        (tree / ".complete").touch()
        return KernelTree(tree, version)
