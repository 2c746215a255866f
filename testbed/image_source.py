"""A source tree for `netboot image` and the served root it publishes into (fixture `served`).

The tree is a tiny Debian-like chroot holding everything the image cleanup must remove:
accounts of people, host keys, logs, home directories, shells' history.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testbed.cli import run_netboot

USERS = {"alice": 1000, "bob": 1001}


def make_chroot(root: Path, kernels: bool = True) -> Path:
    """A tiny Debian-like tree with everything cleanup must remove."""
    for sub in (
        "bin",
        "etc/ssh",
        "var/log/apt",
        "boot",
        "proc",
        "dev",
        "sys",
        "tmp",
        "root",
        "home/alice",
        "lib/modules/6.1.0-10-amd64",
        "lib/modules/6.1.0-1-amd64",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    for applet in ("sh", "ls", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    accounts = "".join(f"{n}:x:{u}:{u}::/home/{n}:/bin/sh\n" for n, u in USERS.items())
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\n{accounts}nobody:x:65534:65534::/:/bin/false\n"
    )
    (root / "etc/passwd-").write_text("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/:\n")
    (root / "etc/shadow").write_text(
        "root:*:19000::::::\nalice:$6$a:19000::::::\nbob:$6$b:1::::::\n"
    )
    os.chmod(root / "etc/shadow", 0o640)
    (root / "etc/group").write_text("root:x:0:\nsudo:x:27:alice,bob\nalice:x:1000:\nbob:x:1001:\n")
    (root / "etc/gshadow").write_text("root:*::\nsudo:*::alice,bob\nalice:!::\nbob:!::\n")
    (root / "etc/subuid").write_text("alice:100000:65536\nbob:165536:65536\n")
    for kind in ("rsa", "ed25519"):
        (root / f"etc/ssh/ssh_host_{kind}_key").write_text(f"PRIVATE {kind}\n")
        (root / f"etc/ssh/ssh_host_{kind}_key.pub").write_text(f"public {kind}\n")
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n")
    (root / "etc/fstab").write_text("/dev/sda1 / ext4 defaults 0 1\n")
    (root / "var/log/syslog").write_text("secret log line\n")
    (root / "var/log/syslog.1").write_text("old log\n")
    (root / "var/log/apt/history.log").write_text("apt history\n")
    (root / "home/alice/notes").write_text("private\n")
    (root / "root/.bash_history").write_text("history\n")
    (root / "tmp/junk").write_text("junk\n")
    if kernels:
        for version in ("6.1.0-1-amd64", "6.1.0-10-amd64", "6.1.0-9-amd64"):
            (root / f"boot/vmlinuz-{version}").write_text(f"kernel {version}\n")
            (root / f"boot/initrd.img-{version}").write_text(f"initrd {version}\n")
    return root


class Served:
    """The served root of one test and what `netboot image` left in it."""

    def __init__(self, root: Path, base: Path) -> None:
        self.root = root
        self.base = base

    def image(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_netboot(
            "image", "--root", str(self.root), "--base-dir", str(self.base), *args, **kwargs
        )

    def publish(self, name: str = "deb") -> str | None:
        """Make the source tree `name`, build it once; the version it published."""
        make_chroot(self.base / name)
        result = self.image(name)
        assert result.returncode == 0, result.stderr
        return self.link(name, "current")

    def link(self, name: str, link: str) -> str | None:
        path = self.root / "images" / name / link
        return os.path.basename(os.readlink(path)) if path.is_symlink() else None

    def versions(self, name: str) -> list[str]:
        directory = self.root / "images" / name / "versions"
        return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []

    def current(self, name: str) -> Path:
        return self.root / "images" / name / "versions" / self.link(name, "current")


@pytest.fixture
def served(tmp_path: Path) -> Served:
    base = tmp_path / "base"
    base.mkdir()
    return Served(tmp_path / "srv", base)
