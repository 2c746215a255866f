"""The test image: a tiny chroot (busybox-static, Debian's cloud kernel and modules, an init
that reports what booted) published with the real `netboot image`.

The init prints one marker line that only this image can print: a random stamp baked into
this build, the root filesystem type and the kernel command line. With `nbtest.hold=N` on the
command line it keeps re-reading the stamp from its root every 2 s for N seconds, which is
how the rebuild test watches a running client across a publish.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from netboot import layout

STAMP_FILE = "etc/netboot-test-stamp"
BUSYBOX = Path("/bin/busybox")
MARKER = "NBTEST-MARKER"

INIT = r"""#!/bin/sh
# netboot vm-test image init: say what booted, from inside the image, then power off.
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
stamp=$(cat /etc/netboot-test-stamp)
rootfs=$(awk '$2 == "/" { fs = $3 } END { print fs }' /proc/mounts)
cmdline=$(cat /proc/cmdline)
echo "NBTEST-MARKER source=image-init pid=$$ rootfs=$rootfs stamp=$stamp cmdline=$cmdline"
hold=0
for arg in $cmdline; do
    case "$arg" in nbtest.hold=*) hold=${arg#nbtest.hold=} ;; esac
done
waited=0
while [ "$waited" -lt "$hold" ]; do
    sleep 2
    waited=$((waited + 2))
    echo 3 > /proc/sys/vm/drop_caches
    echo "NBTEST-STILL t=$waited stamp=$(cat /etc/netboot-test-stamp)"
done
echo "NBTEST-DONE"
sync
poweroff -f
"""

MARKER_RE = re.compile(
    r"NBTEST-MARKER source=image-init pid=(?P<pid>\d+) rootfs=(?P<rootfs>\S*) "
    r"stamp=(?P<stamp>\S*) cmdline=(?P<cmdline>[^\n]*)"
)


@dataclass(frozen=True)
class Published:
    """One version of the test image as `netboot image` published it."""

    name: str
    version: str
    directory: Path
    manifest: dict
    stamp: str


def _busybox_applets() -> list[str]:
    out = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.split() if line]


def build_chroot(
    dest: Path, kernel_root: Path, kernel_version: str, busybox: Path = BUSYBOX
) -> str:
    """Make the chroot at `dest` and return its stamp. `busybox` is the static binary put in
    it (another CPU's for the arm64 image; the applet list comes from the host's)."""
    if dest.exists():
        shutil.rmtree(dest)
    for sub in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "boot",
        "lib/modules",
    ):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin/busybox")
    for applet in _busybox_applets():
        link = dest / applet
        if not link.exists() and applet != "bin/busybox":
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    (dest / "sbin/init").unlink(missing_ok=True)
    init = dest / "sbin/init"
    init.write_text(INIT)
    init.chmod(0o755)
    (dest / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc/group").write_text("root:x:0:\n")
    (dest / "etc/hostname").write_text("nbtest\n")
    shutil.copy2(
        kernel_root / "boot" / f"vmlinuz-{kernel_version}",
        dest / "boot" / f"vmlinuz-{kernel_version}",
    )
    shutil.copytree(
        kernel_root / "lib/modules" / kernel_version,
        dest / "lib/modules" / kernel_version,
        symlinks=True,
    )
    return set_stamp(dest)


def set_stamp(chroot: Path) -> str:
    """A new random stamp in the chroot (what the next published version will carry)."""
    stamp = secrets.token_hex(8)
    (chroot / STAMP_FILE).write_text(stamp + "\n")
    return stamp


def publish(root: Path, base_dir: Path, name: str, log: Path) -> Published:
    """Run the real `netboot image` and return what `current` points at afterwards."""
    stamp = (base_dir / name / STAMP_FILE).read_text().strip()
    with open(log, "ab") as out:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "netboot",
                "image",
                "--root",
                str(root),
                "--base-dir",
                str(base_dir),
                "-i",
                "",
                name,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"netboot image {name} failed ({result.returncode}):\n{tail}")
    current = layout.resolve_link(root, name, layout.CURRENT)
    if current is None:
        raise RuntimeError(f"netboot image {name}: no {layout.CURRENT} link after publishing")
    if current.initrd is None and current.standalone_initrd is None:
        # the contract: an image without an initramfs is published with standalone.img
        raise AssertionError(f"netboot image published {name} {current.version} without "
                             "initrd.img or standalone.img")  # fmt: skip
    return Published(name, current.version, current.directory, current.manifest, stamp)


class TestImage:
    """The session's image: one chroot, republished with a new stamp when a test asks."""

    __test__ = False

    def __init__(self, root: Path, base_dir: Path, name: str, log: Path) -> None:
        self.root = root
        self.base_dir = base_dir
        self.name = name
        self.log = log

    @property
    def chroot(self) -> Path:
        return self.base_dir / self.name

    def build(self, kernel_root: Path, kernel_version: str) -> Published:
        build_chroot(self.chroot, kernel_root, kernel_version)
        return publish(self.root, self.base_dir, self.name, self.log)

    def republish(self) -> Published:
        """A new version with a new stamp, published while the server runs."""
        set_stamp(self.chroot)
        return publish(self.root, self.base_dir, self.name, self.log)

    def version(self, version: str) -> Published:
        """A published version as found on disk, its stamp read back from its squashfs."""
        found = layout.find_version(self.root, self.name, version)
        if found is None or found.squashfs is None:
            raise AssertionError(f"{self.name} version {version} is not published")
        return Published(
            self.name, version, found.directory, found.manifest, stamp_in_squashfs(found.squashfs)
        )

    def current(self) -> Published:
        found = layout.resolve_link(self.root, self.name, layout.CURRENT)
        if found is None:
            raise AssertionError(f"{self.name} has no current version")
        return self.version(found.version)


def stamp_in_squashfs(squashfs: Path) -> str:
    """The stamp as stored in a published squashfs (read back, not remembered)."""
    out = subprocess.run(
        ["unsquashfs", "-cat", str(squashfs), STAMP_FILE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip()


def manifest_of(directory: Path) -> dict:
    return json.loads((directory / layout.MANIFEST).read_text())
