"""An LTSP site made by LTSP's own tools (make vm-test-full), as a new LTSP user makes one:
a Debian bookworm chroot with a kernel, initramfs-tools and the `ltsp` package (its
client-side code), `ltsp image` (squashfs), then `ltsp kernel`, `ltsp initrd` (ltsp.img)
and `ltsp ipxe` (ltsp.ipxe) into a TFTP tree of the test's own.

LTSP's BASE_DIR (/srv/ltsp on a real site: the chroot and images/bookworm.img) lives in the
test cache, made once: debootstrap and mksquashfs take minutes. `--base-dir` and
`--tftp-dir` keep every LTSP applet away from /srv; /etc/ltsp is left as the host has it.
The chroot's report unit prints what the test needs once multi-user.target is reached:
whether LTSP's init ran as PID 1 (it makes /run/ltsp/client and names the host `ltsp` + the
host part of its address), the squashfs under the root and the NFS version it came over.
The NFS mount itself is not in /proc/mounts: LTSP stacks the overlay on the NFS root in the
initramfs and only the overlay moves to /, so the kernel's NFS client table says it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmbed.distro import CACHE, SUITE, cached_debootstrap, install_report_unit
from vmbed.image import STAMP_FILE

LTSP_CACHE = CACHE / "ltsp"
BASE_DIR = LTSP_CACHE / "base"  # LTSP's BASE_DIR: the chroot `bookworm` and images/
IMAGE_NAME = SUITE  # ltsp image bookworm -> images/bookworm.img
# `ltsp` for its client code (the chroot is what LTSP's docs start from); its Depends
# `ssh-client` is virtual, which debootstrap cannot resolve
PACKAGES = ("linux-image-amd64", "initramfs-tools", "systemd-sysv", "openssh-client", "ltsp")

REPORT = r"""#!/bin/sh
# netboot vm-test (LTSP): what booted, whether LTSP's init ran, where the root came from.
target=$(systemctl is-active multi-user.target)
rootfs=$(awk '$2 == "/" { fs = $3 } END { print fs }' /proc/mounts)
stamp=$(cat /etc/netboot-test-stamp)
host=$(hostname)
client=$(test -d /run/ltsp/client && echo yes || echo no)
loop=$(awk '$3 == "squashfs" { print $1; exit }' /proc/mounts)
backing=$(cat "/sys/block/${loop#/dev/}/loop/backing_file" 2>/dev/null)
nfs=$(awk 'NR > 1 { print $1 }' /proc/fs/nfsfs/volumes 2>/dev/null | sort -u | paste -sd+)
echo "NBTEST-LTSP target=$target rootfs=$rootfs stamp=$stamp host=$host client=$client" \
    "loop=${loop:-none} backing=${backing:-none} nfs=${nfs:-none}" > /dev/ttyS0
systemctl --no-block poweroff
"""
REPORT_RE = re.compile(
    r"NBTEST-LTSP target=(?P<target>\S*) rootfs=(?P<rootfs>\S*) stamp=(?P<stamp>\S*) "
    r"host=(?P<host>\S*) client=(?P<client>\S*) loop=(?P<loop>\S*) "
    r"backing=(?P<backing>\S*) nfs=(?P<nfs>\S*)"
)


@dataclass(frozen=True)
class LtspSite:
    base_dir: Path  # ltsp_root: chroot and images/NAME.img, exported over NFS
    tftp_dir: Path  # ltsp_tftp_root: ltsp.ipxe, ltsp.img, NAME/{vmlinuz,initrd.img}
    image: Path
    stamp: str  # read back from the squashfs: what a client booting it must report


def ltsp(*argv: str, tftp_dir: Path, log: Path, timeout: float = 1800) -> None:
    """One LTSP applet with our BASE_DIR and TFTP_DIR (LTSP writes TFTP_DIR/ltsp/...). Also
    in the environment: `ltsp image` calls `ltsp kernel` without passing its options on."""
    env = {**os.environ, "BASE_DIR": str(BASE_DIR), "TFTP_DIR": str(tftp_dir)}
    with open(log, "ab") as out:
        out.write(f"\n$ ltsp {' '.join(argv)}\n".encode())
        out.flush()
        argv = ("ltsp", f"--base-dir={BASE_DIR}", f"--tftp-dir={tftp_dir}", *argv)
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=timeout,
                       env=env)  # fmt: skip


def cached_image(log: Path) -> Path:
    """The chroot (debootstrap) and `ltsp image` of it, made once per report script: a new
    stamp and the report unit go into the chroot before the squashfs is made."""
    chroot = cached_debootstrap(BASE_DIR, PACKAGES, log)
    image = BASE_DIR / "images" / f"{IMAGE_NAME}.img"
    complete = LTSP_CACHE / f".image-{hashlib.sha256(REPORT.encode()).hexdigest()[:16]}"
    with open(LTSP_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not complete.exists():
            for old in LTSP_CACHE.glob(".image-*"):
                old.unlink()
            install_report_unit(chroot, REPORT)
            # `ltsp image` ends with `ltsp kernel`: into the cache's TFTP tree, not /srv/tftp
            ltsp("image", IMAGE_NAME, tftp_dir=LTSP_CACHE / "tftp", log=log)
            complete.touch()
    return image


def build_site(tftp_dir: Path, log: Path) -> LtspSite:
    """The cached image, then `ltsp kernel`, `ltsp initrd` and `ltsp ipxe` into `tftp_dir`."""
    image = cached_image(log)
    for applet in (("kernel", IMAGE_NAME), ("initrd",), ("ipxe",)):
        ltsp(*applet, tftp_dir=tftp_dir, log=log, timeout=600)
    stamp = subprocess.run(["unsquashfs", "-cat", str(image), STAMP_FILE], capture_output=True,
                           text=True, check=True, timeout=120).stdout.strip()  # fmt: skip
    return LtspSite(BASE_DIR, tftp_dir / "ltsp", image, stamp)
