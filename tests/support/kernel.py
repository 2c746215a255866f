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


def resolve_package(meta: str, pattern: str) -> str:
    """The versioned kernel package a meta package depends on (`linux-image-cloud-amd64` ->
    `linux-image-6.1.0-56-cloud-amd64`); refreshes the package lists once if they are
    missing, as on a fresh machine."""
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        out = subprocess.run(
            ["apt-cache", "depends", meta], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(rf"Depends:\s+({pattern})", out)
        if match:
            return match.group(1)
    raise RuntimeError(f"cannot resolve {meta} with apt-cache depends")


def download_deb(package: str) -> Path:
    """The package's .deb in the cache, fetched with `apt-get download` the first time."""
    debs = sorted(CACHE.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=CACHE, check=True,
                       capture_output=True)  # fmt: skip
        debs = sorted(CACHE.glob(f"{package}_*.deb"))
    return debs[0]


def cloud_kernel() -> KernelTree:
    """Download (once) and extract Debian's cloud kernel; safe to call from parallel tests."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for tree in sorted(CACHE.glob("tree-*")):
            versions = list((tree / "lib" / "modules").glob("*"))
            if (tree / ".complete").exists() and versions:
                return KernelTree(tree, versions[0].name)
        package = resolve_package(META_PACKAGE, r"linux-image-\S+-cloud-amd64")
        deb = download_deb(package)
        version = package.removeprefix("linux-image-")
        tree = CACHE / f"tree-{version}"
        subprocess.run(["rm", "-rf", str(tree)], check=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        subprocess.run(["depmod", "-b", str(tree), version], check=True)
        (tree / ".complete").touch()
        return KernelTree(tree, version)
