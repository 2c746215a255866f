"""Debian's arm64 shim, GRUB and busybox for the arm64 UEFI client, on an amd64 host.

They are arm64 packages (not installable here): fetched with `apt-get download` into the
test cache once (like the kernels of `testbed.kernel`) and unpacked with `dpkg-deb -x`.
"""

from __future__ import annotations

import fcntl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testbed.kernel import _writable_cache, download_deb, ensure_foreign_arch

PACKAGES = ("shim-signed", "grub-efi-arm64-signed", "busybox-static")


@dataclass(frozen=True)
class Arm64Files:
    tree: Path

    @property
    def shim(self) -> Path:
        return self.tree / "usr/lib/shim/shimaa64.efi.signed"

    @property
    def grub(self) -> Path:
        return self.tree / "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"

    @property
    def busybox(self) -> Path:
        return self.tree / "bin/busybox"


def arm64_boot_files() -> Arm64Files:
    """The unpacked packages (cached; the download happens once per machine)."""
    cache = _writable_cache()
    cache.mkdir(parents=True, exist_ok=True)
    files = Arm64Files(cache / "arm64-boot")
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (files.tree / ".complete").exists():
            ensure_foreign_arch("arm64")
            for package in PACKAGES:
                deb = download_deb(package, cache, "arm64")
                subprocess.run(["dpkg-deb", "-x", str(deb), str(files.tree)], check=True)
            (files.tree / ".complete").touch()
    return files
