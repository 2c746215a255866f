"""`netboot image` end to end: real mksquashfs, overlays, loop mounts, run as a process.

Each test builds a small chroot (busybox, accounts, host keys, logs, two kernels) and runs
the CLI on it, then looks inside the squashfs with unsquashfs. Kill tests interrupt a
real mksquashfs run and check that nothing is left behind. `netboot image` refuses to run
without root, so the tests that build are marked `root`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testbed.cli import NETBOOT
from testbed.image_source import Served, make_chroot


def tree_digest(root: Path) -> str:
    """Hash of names, modes, owners, contents and link targets of a whole tree."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            digest.update(
                f"{path.relative_to(root)}:{st.st_mode}:{st.st_uid}:{st.st_mtime_ns}\n".encode()
            )
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def squash_list(squashfs: Path) -> set[str]:
    out = subprocess.run(
        ["unsquashfs", "-l", "-d", "", str(squashfs)], capture_output=True, text=True, check=True
    ).stdout
    return {line.strip().lstrip("/") for line in out.splitlines() if line.startswith("/")}


def squash_cat(squashfs: Path, path: str) -> str:
    return subprocess.run(
        ["unsquashfs", "-cat", str(squashfs), path], capture_output=True, text=True, check=True
    ).stdout


def no_leftovers(tmp_path: Path, backing: Path | None = None) -> None:
    """No mount, loop device or mksquashfs process refers to this test's files."""
    mounts = Path("/proc/mounts").read_text()
    assert str(tmp_path) not in mounts
    if backing is not None:
        loops = subprocess.run(["losetup", "-j", str(backing)], capture_output=True, text=True)
        assert loops.stdout.strip() == ""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            assert not (b"mksquashfs" in cmdline and str(tmp_path).encode() in cmdline)


@pytest.mark.root
def test_build_cleans_the_image_and_leaves_the_source_untouched(served: Served) -> None:
    source = make_chroot(served.base / "deb")
    before = tree_digest(source)
    result = served.image("deb")
    assert result.returncode == 0, result.stderr
    assert tree_digest(source) == before

    version = served.link("deb", "current")
    assert version is not None and served.versions("deb") == [version]
    assert served.link("deb", "previous") is None
    directory = served.current("deb")
    squashfs = directory / "root.squashfs"
    names = squash_list(squashfs)

    assert {
        "bin/busybox",
        "bin/sh",
        "etc/passwd",
        "etc/ssh/sshd_config",
        "var/log/syslog",
        "lib/modules/6.1.0-10-amd64",
    } <= names
    # host keys, home, root's files, tmp, rotated and nested logs stay out; the dirs remain
    assert not [n for n in names if n.startswith("etc/ssh/ssh_host_")]
    assert {"home", "root", "tmp", "proc", "dev"} <= names
    assert not [n for n in names if n.startswith(("home/", "root/", "tmp/"))]
    assert "var/log/syslog.1" not in names and "var/log/apt/history.log" not in names

    passwd = squash_cat(squashfs, "etc/passwd")
    assert "root:" in passwd and "nobody:" in passwd
    assert "alice" not in passwd and "bob" not in passwd
    assert "alice" not in squash_cat(squashfs, "etc/passwd-")
    assert squash_cat(squashfs, "etc/shadow").splitlines() == ["root:*:19000::::::"]
    assert squash_cat(squashfs, "etc/group").splitlines() == ["root:x:0:", "sudo:x:27:"]
    assert squash_cat(squashfs, "etc/gshadow").splitlines() == ["root:*::", "sudo:*::"]
    assert squash_cat(squashfs, "etc/subuid") == ""
    assert squash_cat(squashfs, "var/log/syslog") == ""
    assert squash_cat(squashfs, "etc/fstab") == ""

    # newest kernel by version sort (6.1.0-10 > 6.1.0-9 > 6.1.0-1), not lexical order
    assert (directory / "vmlinuz").read_text() == "kernel 6.1.0-10-amd64\n"
    assert (directory / "initrd.img").read_text() == "initrd 6.1.0-10-amd64\n"
    assert (directory / "vmlinuz").stat().st_mode & 0o777 == 0o644

    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["name"] == "deb" and manifest["version"] == version
    assert manifest["size"] == squashfs.stat().st_size
    assert manifest["sha256"] == hashlib.sha256(squashfs.read_bytes()).hexdigest()
    assert manifest["kernel_version"] == "6.1.0-10-amd64"
    assert manifest["source"] == "deb"
    assert "-comp" in manifest["mksquashfs_params"]
    assert manifest["created"].endswith("Z")
    assert (
        "zstd"
        in subprocess.run(
            ["unsquashfs", "-s", str(squashfs)], capture_output=True, text=True
        ).stdout
    )
    assert f"deb {version} published" in result.stdout
    assert "kernel 6.1.0-10-amd64" in result.stdout
    no_leftovers(served.root.parent)


@pytest.mark.root
def test_second_build_moves_previous_and_revert_swaps_back(served: Served) -> None:
    first = served.publish("deb")
    second_run = served.image("deb")
    assert second_run.returncode == 0, second_run.stderr
    second = served.link("deb", "current")
    assert second != first  # same second: a -1 suffix keeps ids unique
    assert served.link("deb", "previous") == first
    # the first version is untouched and still complete
    assert (served.root / "images/deb/versions" / first / "root.squashfs").is_file()

    reverted = served.image("-r", "deb")
    assert reverted.returncode == 0, reverted.stderr
    assert served.link("deb", "current") == first
    assert served.link("deb", "previous") == second

    third = served.image("-b", "0", "deb")
    assert third.returncode == 0
    assert served.link("deb", "previous") == second  # -b 0 leaves previous alone


@pytest.mark.root
def test_keep_versions_prunes_all_but_current_and_previous(served: Served, tmp_path: Path) -> None:
    make_chroot(served.base / "deb")
    config = tmp_path / "netboot.toml"
    config.write_text("[image]\nkeep_versions = 1\nmksquashfs_params = '-comp gzip'\n")
    for _ in range(3):
        result = served.image("--config", str(config), "deb")
        assert result.returncode == 0, result.stderr
    versions = served.versions("deb")
    assert len(versions) == 2
    assert set(versions) == {served.link("deb", "current"), served.link("deb", "previous")}
    manifest = json.loads((served.current("deb") / "manifest.json").read_text())
    assert manifest["mksquashfs_params"] == ["-comp", "gzip"]


@pytest.mark.root
def test_prune_keeps_a_version_clients_still_use(served: Served, tmp_path: Path) -> None:
    """LTSP issue 928: a client booted in place over NFS reads its version for as long as it
    runs; the server's .in-use (netboot/in_use.py) keeps it from being pruned."""
    make_chroot(served.base / "deb")
    config = tmp_path / "netboot.toml"
    config.write_text("[image]\nkeep_versions = 1\nmksquashfs_params = '-comp gzip'\n")
    assert served.image("--config", str(config), "deb").returncode == 0
    booted = served.link("deb", "current")
    in_use = served.root / "images" / "deb" / ".in-use"
    in_use.write_text(json.dumps({booted: time.time(), "gone": time.time()}))
    for _ in range(2):
        result = served.image("--config", str(config), "deb")
        assert result.returncode == 0, result.stderr
    assert booted in served.versions("deb") and len(served.versions("deb")) == 3
    assert f"kept old versions clients still use: {booted}" in result.stderr
    # last seen beyond in_use_days: pruned like any other
    in_use.write_text(json.dumps({booted: time.time() - 31 * 86400}))
    result = served.image("--config", str(config), "deb")
    assert result.returncode == 0, result.stderr
    assert booted not in served.versions("deb") and len(served.versions("deb")) == 2


@pytest.mark.root
def test_no_cleanup_squashes_the_source_as_is(served: Served) -> None:
    make_chroot(served.base / "deb")
    result = served.image("-c", "0", "deb")
    assert result.returncode == 0, result.stderr
    squashfs = served.current("deb") / "root.squashfs"
    names = squash_list(squashfs)
    assert "alice" in squash_cat(squashfs, "etc/passwd")
    assert "etc/ssh/ssh_host_rsa_key" in names and "home/alice/notes" in names


@pytest.mark.root
def test_separate_boot_joins_with_subdir(served: Served, tmp_path: Path) -> None:
    root = make_chroot(served.base / "split", kernels=False)
    boot = tmp_path / "bootpart"
    boot.mkdir()
    (boot / "vmlinuz-6.2.0-1-amd64").write_text("split kernel\n")
    (boot / "initrd.img-6.2.0-1-amd64").write_text("split initrd\n")
    before = tree_digest(root)
    result = served.image(f"split,,{boot},subdir=boot")
    assert result.returncode == 0, result.stderr
    assert "boot/vmlinuz-6.2.0-1-amd64" in squash_list(served.current("split") / "root.squashfs")
    assert (served.current("split") / "vmlinuz").read_text() == "split kernel\n"
    assert tree_digest(root) == before


def make_disk(path: Path, tree: Path, size_mb: int = 64) -> None:
    """A GPT disk: an EFI system partition (holding a decoy ext4) then a Linux one."""
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(path)], check=True)
    layout = (
        "label: gpt\nsize=8M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
        "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
    )
    subprocess.run(["sfdisk", "-q", str(path)], input=layout, text=True, check=True)
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(path)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    decoy = path.parent / "decoy"
    decoy.mkdir()
    (decoy / "EFI-DECOY").write_text("must not be the image\n")
    for part, source in zip(table["partitions"], (decoy, tree), strict=True):
        fs = path.parent / f"part{part['start']}.ext4"
        subprocess.run(["truncate", "-s", str(part["size"] * 512), str(fs)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-d", str(source), str(fs)], check=True)
        subprocess.run(
            [
                "dd",
                f"if={fs}",
                f"of={path}",
                "bs=512",
                f"seek={part['start']}",
                "conv=notrunc",
                "status=none",
            ],
            check=True,
        )
        fs.unlink()


@pytest.mark.root
def test_raw_disk_with_efi_partition_first(served: Served, tmp_path: Path) -> None:
    tree = make_chroot(tmp_path / "vmtree")
    disk = tmp_path / "vm-flat.vmdk"
    make_disk(disk, tree)
    (served.base / "vm.img").symlink_to(disk)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    result = served.image("vm")
    assert result.returncode == 0, result.stderr
    names = squash_list(served.current("vm") / "root.squashfs")
    assert "bin/busybox" in names and "EFI-DECOY" not in names
    assert "alice" not in squash_cat(served.current("vm") / "root.squashfs", "etc/passwd")
    assert (served.current("vm") / "vmlinuz").read_text() == "kernel 6.1.0-10-amd64\n"
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before
    no_leftovers(tmp_path, disk)


def start_slow_build(served: Served, name: str) -> tuple[subprocess.Popen, Path]:
    """Start a build that takes a few seconds (random data, xz on one processor) and
    return once mksquashfs is writing."""
    process = subprocess.Popen(
        [
            *NETBOOT,
            "image",
            "--root",
            str(served.root),
            "--base-dir",
            str(served.base),
            "-m=-comp xz -processors 1",
            name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    versions = served.root / "images" / name / "versions"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        staged = [p for p in versions.glob(".*.tmp/root.squashfs") if p.stat().st_size > 0]
        if staged:
            return process, staged[0].parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    raise AssertionError("mksquashfs never started writing")


@pytest.fixture
def big_chroot(served: Served) -> Path:
    root = make_chroot(served.base / "big")
    with open(root / "bigfile", "wb") as f:
        f.write(os.urandom(16 * 1024 * 1024))
    first = served.image("-m=-comp gzip", "big")
    assert first.returncode == 0, first.stderr
    return root


@pytest.mark.root
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_build_keeps_the_old_version(
    served: Served, big_chroot: Path, signum: int
) -> None:
    old = served.link("big", "current")
    process, staging = start_slow_build(served, "big")
    process.send_signal(signum)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signum
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(
            f"netboot image: interrupted by {signal.Signals(signum).name}; nothing published"
        )
    )
    assert "Traceback" not in err
    assert served.link("big", "current") == old
    assert served.versions("big") == [old]
    assert not staging.exists()
    no_leftovers(served.root.parent)


@pytest.mark.root
def test_killed_build_is_cleaned_by_the_next(served: Served, tmp_path: Path) -> None:
    tree = make_chroot(tmp_path / "bigtree")
    with open(tree / "bigfile", "wb") as f:
        f.write(os.urandom(16 * 1024 * 1024))
    disk = tmp_path / "big.img"
    make_disk(disk, tree, size_mb=96)
    (served.base / "big.img").symlink_to(disk)
    assert served.image("-m=-comp gzip", "big").returncode == 0
    old = served.link("big", "current")

    process, staging = start_slow_build(served, "big")
    process.kill()
    process.communicate(timeout=30)
    # the kernel drops the private mount namespace, its loop mount (autoclear) and, by
    # the parent-death signal, mksquashfs
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        loops = subprocess.run(["losetup", "-j", str(disk)], capture_output=True, text=True)
        if not loops.stdout.strip():
            break
        time.sleep(0.1)
    no_leftovers(tmp_path, disk)
    assert served.link("big", "current") == old
    assert staging.exists()  # only a SIGKILL leaves this, for the next build to remove

    again = served.image("-m=-comp gzip", "big")
    assert again.returncode == 0, again.stderr
    assert not staging.exists()
    assert served.link("big", "previous") == old
    assert not [p for p in served.versions("big") if p.startswith(".")]


@pytest.mark.root
def test_progress_lines_when_not_a_terminal(served: Served, big_chroot: Path) -> None:
    result = served.image("-m=-comp xz -processors 1", "big")
    assert result.returncode == 0, result.stderr
    percents = [
        int(line.rsplit(" ", 1)[1].rstrip("%"))
        for line in result.stderr.splitlines()
        if line.startswith("netboot image: big ") and line.endswith("%")
    ]
    assert len(percents) >= 2 and percents[-1] == 100 and percents == sorted(percents)
    match = re.search(r"published: ([\d.]+) MiB \((\d+)% of ([\d.]+) MiB\)", result.stdout)
    assert match, result.stdout
    size, ratio, uncompressed = float(match[1]), int(match[2]), float(match[3])
    manifest = json.loads((served.current("big") / "manifest.json").read_text())
    assert abs(size - manifest["size"] / 2**20) < 0.06
    assert uncompressed >= 16 and abs(ratio - 100 * size / uncompressed) <= 1


# --- bad input: one line, non-zero, nothing published ------------------------------------


def last_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.root
def test_missing_source(served: Served) -> None:
    result = served.image("nosuch")
    assert result.returncode == 1
    assert last_line(result).startswith("netboot image: source not found: nosuch")
    assert not (served.root / "images").exists()


@pytest.mark.root
def test_not_root(served: Served, tmp_path: Path) -> None:
    make_chroot(served.base / "deb")
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *NETBOOT,
            "image",
            "--root",
            "/nonexistent/srv",
            "--base-dir",
            str(served.base),
            "deb",
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert result.returncode == 1
    assert last_line(result) == (
        "netboot image: must run as root (it mounts image sources and loop devices)"
    )


@pytest.mark.root
def test_mksquashfs_missing(served: Served) -> None:
    make_chroot(served.base / "deb")
    result = served.image("deb", env={**os.environ, "PATH": "/nonexistent"})
    assert result.returncode == 1
    assert last_line(result) == "netboot image: mksquashfs not found; install squashfs-tools"
    assert not (served.root / "images").exists()


def test_config_error_exits_2(served: Served, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[image]\nkeep_versions = 0\n")
    result = served.image("--config", str(config), "deb")
    assert result.returncode == 2
    assert last_line(result).startswith("netboot image: config error: image.keep_versions")


@pytest.mark.root
def test_no_kernel_publishes_nothing(served: Served) -> None:
    make_chroot(served.base / "nokernel", kernels=False)
    result = served.image("nokernel")
    assert result.returncode == 1
    assert last_line(result).startswith("netboot image: nokernel: no kernel found")
    assert served.versions("nokernel") == []
    assert served.link("nokernel", "current") is None
    no_leftovers(served.root.parent)


@pytest.mark.root
def test_mksquashfs_failure_publishes_nothing(served: Served) -> None:
    old = served.publish("deb")
    result = served.image("-m=-comp nosuchcompressor", "deb")
    assert result.returncode == 1
    assert last_line(result).startswith("netboot image: deb: mksquashfs failed:")
    assert served.versions("deb") == [old] and served.link("deb", "current") == old
    no_leftovers(served.root.parent)


@pytest.mark.root
def test_revert_without_previous(served: Served) -> None:
    served.publish("deb")
    result = served.image("-r", "deb")
    assert result.returncode == 1
    assert last_line(result) == "netboot image: deb has no previous version to revert to"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-b", "2", "deb"], "argument -b/--backup: expected 0 or 1"),
        (["-k", "vmlinuz-* nonsense", "deb"], "not a sed substitution"),
        # the image command checks it runs as root before it looks at the source
        pytest.param(["deb,partition=x"], "partition=x: expected a number", marks=pytest.mark.root),
        pytest.param(["/tmp/bad name"], "source not found", marks=pytest.mark.root),
    ],
)
def test_bad_arguments(served: Served, args: list[str], message: str) -> None:
    make_chroot(served.base / "deb")
    result = served.image(*args)
    assert result.returncode in (1, 2)
    assert message in last_line(result)
    assert served.versions("deb") == []


@pytest.mark.root
def test_concurrent_build_of_the_same_image_is_refused(served: Served) -> None:
    make_chroot(served.base / "deb")
    image_dir = served.root / "images/deb"
    image_dir.mkdir(parents=True)
    with open(image_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = served.image("deb")
    assert result.returncode == 1
    assert (
        last_line(result)
        == f"netboot image: deb: another netboot image run is working on {image_dir}"
    )
    assert served.versions("deb") == []
