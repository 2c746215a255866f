"""A real distribution image: Debian bookworm (minbase, cloud kernel, initramfs-tools,
systemd) made with debootstrap, cached, plus a oneshot unit that reports on the serial
console once systemd has reached multi-user.target.

The unit prints the root line's password hash from /etc/shadow, which the netboot add-on
sets from the server's `[clients] root_password_hash`; then it powers the client off.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

from vmbed.image import set_stamp

CACHE = Path(os.environ.get("NETBOOT_TEST_CACHE", "/var/cache/netboot-tests"))
SUITE = "bookworm"
PACKAGES = ("linux-image-cloud-amd64", "initramfs-tools", "systemd-sysv")
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
DISTRO_MARKER_RE = re.compile(
    r"NBTEST-DISTRO target=(?P<target>\S*) rootfs=(?P<rootfs>\S*) stamp=(?P<stamp>\S*) "
    r"hash=(?P<hash>\S*)"
)

UNIT = """[Unit]
Description=netboot vm-test: report multi-user.target on the serial console
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/nbtest-report

[Install]
WantedBy=multi-user.target
"""

REPORT = r"""#!/bin/sh
# Runs once multi-user.target is reached: what the test needs to see, then power off.
target=$(systemctl is-active multi-user.target)
rootfs=$(awk '$2 == "/" { fs = $3 } END { print fs }' /proc/mounts)
stamp=$(cat /etc/netboot-test-stamp)
hash=$(awk -F: '$1 == "root" { print $2 }' /etc/shadow)
echo "NBTEST-DISTRO target=$target rootfs=$rootfs stamp=$stamp hash=$hash" > /dev/ttyS0
systemctl --no-block poweroff
"""


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses for the suite (deb822 or one-line format)."""
    files: list[Path] = []
    for source in SOURCES:
        if source.is_dir():
            files += sorted(source.glob("*.sources")) + sorted(source.glob("*.list"))
        elif source.is_file():
            files.append(source)
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
                if SUITE in fields.get("Suites", "").split():
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                # deb [options] URI SUITE COMPONENT...
                match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+://\S+)\s+(\S+)", line)
                if match and match.group(2) == SUITE:
                    return match.group(1)
    raise RuntimeError(f"no apt source for {SUITE} in /etc/apt/sources.list*")


def bookworm_chroot(log: Path) -> Path:
    """debootstrap once into the cache; returns BASE/bookworm (BASE is the image base dir)."""
    chroot = cached_debootstrap(CACHE / "distro", PACKAGES, log)
    install_report_unit(chroot)
    return chroot


def cached_debootstrap(base: Path, packages: tuple[str, ...], log: Path) -> Path:
    """bookworm minbase plus `packages` in BASE/bookworm, made once (BASE/.bookworm.complete
    says it finished) under a lock, from this machine's apt mirror."""
    chroot = base / SUITE
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / f".{SUITE}.complete").exists():
            shutil.rmtree(chroot, ignore_errors=True)
            with open(log, "ab") as out:
                subprocess.run(
                    ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                     SUITE, str(chroot), apt_mirror()],
                    stdout=out, stderr=subprocess.STDOUT, check=True, timeout=3600,
                )  # fmt: skip
            (base / f".{SUITE}.complete").touch()
    return chroot


def install_report_unit(chroot: Path, report: str = REPORT) -> str:
    """The reporting unit, enabled, running `report`, and a new stamp; returns the stamp."""
    unit_dir = chroot / "etc/systemd/system"
    (unit_dir / "nbtest-report.service").write_text(UNIT)
    wants = unit_dir / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "nbtest-report.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/nbtest-report.service")
    script = chroot / "usr/local/sbin/nbtest-report"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(report)
    script.chmod(0o755)
    return set_stamp(chroot)
