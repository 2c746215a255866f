"""Debian kernels for boot tests, fetched with `apt-get download`, extracted once and cached.

The cloud flavour is small and has virtio drivers, squashfs, overlay and loop as modules:
exactly what the initramfs must load, so the tests exercise module resolution. It has no
e1000 driver at all (CONFIG_E1000 is not set), so e1000 clients get Debian's generic kernel,
trimmed to the modules a network boot needs so that its image stays as small.

Root shares one cache (/var/cache/netboot-tests, or $NETBOOT_TEST_CACHE); another user reads
the kernels already there and keeps what it must download itself in ~/.cache/netboot-tests.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netboot.image.standalone import resolve_modules

SHARED_CACHE = Path(os.environ.get("NETBOOT_TEST_CACHE", "/var/cache/netboot-tests"))
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netboot-tests"
CLOUD_PACKAGE = "linux-image-cloud-amd64"
CLOUD_PACKAGE_ARM64 = "linux-image-cloud-arm64"
GENERIC_PACKAGE = "linux-image-amd64"
BOOT_MODULES = ("e1000", "e1000e", "virtio_net", "virtio_pci", "af_packet", "loop", "squashfs",
                "overlay")  # fmt: skip


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


def cloud_kernel() -> KernelTree:
    """Debian's cloud kernel with all its modules; safe to call from parallel tests."""

    def extract(deb: Path, version: str, tree: Path) -> None:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)

    return cached_kernel("tree-", CLOUD_PACKAGE, r"linux-image-\S+-cloud-amd64", extract)


def cloud_kernel_arm64() -> KernelTree:
    """Debian's arm64 cloud kernel (signed, like the amd64 one), for the arm64 UEFI client."""

    def extract(deb: Path, version: str, tree: Path) -> None:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)

    return cached_kernel("arm64-tree-", CLOUD_PACKAGE_ARM64, r"linux-image-\S+-cloud-arm64",
                         extract, arch="arm64")  # fmt: skip


def generic_kernel() -> KernelTree:
    """Debian's generic kernel with only its boot modules (and what they depend on)."""
    return cached_kernel("generic-boot-", GENERIC_PACKAGE, r"linux-image-\d\S+-amd64", _trim)


def cached_kernel(
    prefix: str,
    meta: str,
    pattern: str,
    extract: Callable[[Path, str, Path], None],
    arch: str = "",
) -> KernelTree:
    """The cached tree `<prefix><version>`, made the first time by `extract(deb, version, tree)`
    for the package that meta package `meta` depends on (a name matching `pattern`); `arch`
    names a foreign architecture (arm64) to fetch packages of."""
    for cache in (SHARED_CACHE, USER_CACHE):
        if found := _complete_tree(cache, prefix):  # complete trees never change: no lock
            return found
    cache = _writable_cache()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if found := _complete_tree(cache, prefix):  # made by a parallel test meanwhile
            return found
        if arch:
            ensure_foreign_arch(arch)
        package = resolve_package(f"{meta}:{arch}" if arch else meta, pattern)
        deb = download_deb(package, cache, arch)
        version = package.removeprefix("linux-image-")
        tree = cache / f"{prefix}{version}"
        shutil.rmtree(tree, ignore_errors=True)
        extract(deb, version, tree)
        subprocess.run(["depmod", "-b", str(tree), version], check=True)
        (tree / ".complete").touch()
        return KernelTree(tree, version)


def _complete_tree(cache: Path, prefix: str) -> KernelTree | None:
    for tree in sorted(cache.glob(f"{prefix}*")):
        versions = list((tree / "lib" / "modules").glob("*"))
        if (tree / ".complete").exists() and versions:
            return KernelTree(tree, versions[0].name)
    return None


def _writable_cache() -> Path:
    shared = SHARED_CACHE if SHARED_CACHE.exists() else SHARED_CACHE.parent
    return SHARED_CACHE if os.geteuid() == 0 or os.access(shared, os.W_OK) else USER_CACHE


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


def download_deb(package: str, cache: Path, arch: str = "") -> Path:
    """The package's .deb in the cache, fetched with `apt-get download` the first time (it
    is kept: a later re-extraction needs no download); `arch` for a foreign one."""
    pattern = f"{package}_*_{arch}.deb" if arch else f"{package}_*.deb"
    debs = sorted(cache.glob(pattern))
    if not debs:
        name = f"{package}:{arch}" if arch else package
        subprocess.run(["apt-get", "download", name], cwd=cache, check=True,
                       capture_output=True)  # fmt: skip
        debs = sorted(cache.glob(pattern))
    return debs[0]


def ensure_foreign_arch(arch: str) -> None:
    """Make dpkg/apt know `arch` packages (only their lists: nothing of it is installed), as
    the arm64 test needs Debian's arm64 shim, GRUB, kernel and busybox on an amd64 host."""
    known = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    if arch not in known:
        subprocess.run(["dpkg", "--add-architecture", arch], check=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)


def _trim(deb: Path, version: str, tree: Path) -> None:
    """Extract the package aside and keep vmlinuz, the boot modules and modules.* metadata."""
    with tempfile.TemporaryDirectory(dir=tree.parent) as tmp:
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
