"""The image builder's pure parts: source syntax, excludes, params, cleanup edits,
version ids, progress output and the mksquashfs exclude semantics they rely on."""

from __future__ import annotations

import io
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netboot.commands.image import merge_params
from netboot.image import cleanup, publish
from netboot.image.build import BuildSettings, exclude_patterns
from netboot.image.errors import ImageError
from netboot.image.progress import Progress
from netboot.image.sources import image_name, list_sources, parse_source
from netboot.image.tree import DirView, parse_listing, resolve


def test_source_lookup_and_names(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "jammy/proc").mkdir(parents=True)
    (base / "debian.img").write_bytes(b"")
    (base / "notes.txt").write_text("x")
    assert parse_source("jammy", base).parts[0].path == base / "jammy"
    assert parse_source("debian", base).name == "debian"
    assert parse_source("debian", base).parts[0].path == base / "debian.img"
    assert list_sources(base) == ["debian", "jammy"]
    machine = platform.machine()
    assert image_name("/") == ("x86_32" if machine.endswith("86") else machine)
    link = tmp_path / "amd64"
    link.symlink_to("/")
    assert parse_source(str(link), base).name == "amd64"
    with pytest.raises(ImageError, match="source not found: nosuch"):
        parse_source("nosuch", base)
    (tmp_path / "bad name").mkdir()
    with pytest.raises(ImageError, match="bad image name"):
        parse_source(str(tmp_path / "bad name"), base)


def test_multi_source_syntax(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    source = parse_source(
        f"/,,{tmp_path}/boot,subdir=boot,noatime,,x.img,partition=2,fstype=ext4", tmp_path
    )
    root, boot, disk = source.parts
    assert root.path == Path("/") and root.subdir == ""
    assert (boot.subdir, boot.options) == ("boot", ("noatime",))
    assert (disk.path, disk.partition, disk.fstype) == (Path("x.img"), 2, "ext4")
    with pytest.raises(ImageError, match=r"'\.\.' is not allowed"):
        parse_source(f"/,,{tmp_path}/boot,subdir=../etc", tmp_path)
    with pytest.raises(ImageError, match="first part cannot have subdir"):
        parse_source("/,subdir=boot", tmp_path)


def test_excludes_config_and_params() -> None:
    full = cleanup.excludes(True, ["opt/big/*"], ["home/*"])
    assert "home/*" not in full and full[-1] == "opt/big/*" and "etc/ssh/ssh_host_*" in full
    assert cleanup.excludes(False, [], []) == ["dev/*", "proc/*", "sys/*", "run/*"]
    configured = ["-comp", "zstd", "-Xcompression-level", "15", "-b", "1M"]
    assert merge_params(configured, ["-no-xattrs"]) == [*configured, "-no-xattrs"]
    replaced = merge_params(configured, ["-comp", "xz", "-Xbcj", "x86"])
    assert replaced == "-b 1M -comp xz -Xbcj x86".split()


def test_exclude_patterns_do_what_mksquashfs_does(tmp_path: Path) -> None:
    """The default list against real mksquashfs: dot files, nesting, literal paths."""
    tree = tmp_path / "tree"
    for rel in (
        "tmp/.X0-lock",
        "tmp/a",
        "var/log/syslog",
        "var/log/syslog.1",
        "var/log/apt/h",
        "srv/net[boot]/x",
        "etc/ssh/ssh_host_rsa_key",
        "etc/ssh/ssh_config",
    ):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("x")
    excludes = tmp_path / "ex"
    patterns = [*cleanup.excludes(True, [], ["srv/*"]), cleanup.escape_wildcards("srv/net[boot]")]
    excludes.write_text("\n".join(patterns) + "\n")
    image = tmp_path / "i.sqfs"
    subprocess.run(
        [
            "mksquashfs",
            str(tree),
            str(image),
            "-noappend",
            "-wildcards",
            "-ef",
            str(excludes),
            "-no-progress",
            "-quiet",
        ],
        check=True,
    )
    listing = subprocess.run(
        ["unsquashfs", "-l", "-d", "", str(image)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(listing) == {
        "/tmp",
        "/var",
        "/var/log",
        "/var/log/syslog",
        "/var/log/apt",
        "/srv",
        "/etc",
        "/etc/ssh",
        "/etc/ssh/ssh_config",
    }


def test_cleanup_edits_and_symlinks_to_the_host(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/login.defs").write_text("UID_MIN 500\nUID_MAX 999\nGID_MIN 500\nGID_MAX 999\n")
    (tree / "etc/passwd").write_text(
        "root:x:0:0::/:/bin/sh\nold:x:500:500::/:\nnew:x:1000:1000::/:\n"
    )
    (tree / "etc/group").write_text("root:x:0:\nold:x:500:\nadm:x:4:old,new\n")
    os.chmod(tree / "etc/passwd", 0o600)
    host_file = tmp_path / "host-fstab"
    host_file.write_text("host data\n")
    (tree / "etc/fstab").symlink_to(host_file)  # as if absolute: must not be followed out
    (tree / "var/log").mkdir(parents=True)
    (tree / "var/log/dmesg").write_text("boot log\n")
    (tree / "var/log/link").symlink_to(host_file)
    report = cleanup.clean(tree)
    assert report.users == ["old"] and report.groups == ["old"]
    assert (tree / "etc/passwd").read_text() == "root:x:0:0::/:/bin/sh\nnew:x:1000:1000::/:\n"
    assert (tree / "etc/passwd").stat().st_mode & 0o777 == 0o600
    assert (tree / "etc/group").read_text() == "root:x:0:\nadm:x:4:new\n"
    assert (tree / "var/log/dmesg").read_text() == ""
    assert host_file.read_text() == "host data\n"


def test_resolve_stays_inside_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot/k").write_text("k")
    (tree / "abs").symlink_to("/boot/k")
    (tree / "up").symlink_to("../../../boot/k")
    (tree / "loop").symlink_to("loop")
    view = DirView(tree)
    assert resolve(view, "abs") == resolve(view, "up") == "boot/k"
    assert resolve(view, "loop") is None and resolve(view, "boot/k/x") is None


def test_listing_parser_handles_links_devices_and_odd_names() -> None:
    listing = (
        b"drwxr-xr-x 0/0                      64 2024-01-01 00:00 \n"
        b"lrwxrwxrwx 0/0                      15 2024-01-01 00:00 /a -> b -> /boot/vmlinuz-1\n"
        b"crw-r--r-- 0/0                   1,  3 2024-01-01 00:00 /dev/null\n"
        b"-rw-r--r-- 0/0                       2 2024-01-01 00:00 /boot/vmlinuz-1\n"
    )
    entries = parse_listing(listing)
    assert entries["a -> b"] == ("link", "/boot/vmlinuz-1")
    assert entries["dev/null"][0] == "other" and entries["boot/vmlinuz-1"][0] == "file"


def test_version_ids_are_unique_and_stale_staging_is_removed(tmp_path: Path) -> None:
    versions = tmp_path / "img/versions"
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert publish.new_version(tmp_path / "none", moment) == "20240506-070809"
    (versions / "20240506-070809").mkdir(parents=True)
    (versions / ".20240506-070809-1.tmp/work").mkdir(parents=True)
    assert publish.new_version(versions, moment) == "20240506-070809-2"
    removed = publish.clean_stale(tmp_path / "img")
    assert [p.name for p in removed] == [".20240506-070809-1.tmp"]
    assert os.listdir(versions) == ["20240506-070809"]


@pytest.mark.root  # mounts a tmpfs
def test_stale_staging_with_a_mount_is_refused(tmp_path: Path) -> None:
    staging = tmp_path / "img/versions/.20240101-000000.tmp/work"
    staging.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", str(staging)], check=True)
    try:
        (staging / "precious").write_text("x")
        with pytest.raises(ImageError, match="still has mounts"):
            publish.clean_stale(tmp_path / "img")
        assert (staging / "precious").exists()
    finally:
        subprocess.run(["umount", str(staging)], check=True)


def test_progress_plain_lines_are_throttled() -> None:
    stream = io.StringIO()
    progress = Progress("deb", stream, interval=3600)
    for percent in (0, 10, 50, 50, 100):
        progress.update(percent)
    progress.done()
    assert stream.getvalue().splitlines() == ["netboot image: deb 0%", "netboot image: deb 100%"]


def test_chrootless_build_excludes_the_served_root_and_base_dir(tmp_path: Path) -> None:
    source = parse_source("/", tmp_path)
    settings = BuildSettings(root=Path("/var/lib/net[boot]"), base_dir=Path("/srv/ltsp"))
    patterns = exclude_patterns(source, settings)
    assert patterns[-2:] == ["var/lib/net\\[boot\\]", "srv/ltsp"]
    chroot = parse_source(str(tmp_path), tmp_path)
    assert exclude_patterns(chroot, settings) == cleanup.excludes(True, [], [])
