"""`netboot kernel` and kernel lookup: version order, ltsp-kernel rules, symlinks kept
inside the image, extraction from a real squashfs and from a mounted source."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from netboot.image.errors import ImageError
from netboot.image.kernel import (
    KernelNotFound,
    extract_kernel,
    extract_kernel_from_squashfs,
    find_kernel,
    parse_rule,
    parse_sed,
)
from netboot.image.tree import DirView
from netboot.image.version_sort import compare_versions, version_key
from testbed.cli import run_netboot


def test_version_sort_matches_sort_v() -> None:
    names = [
        "vmlinuz-6.1.0-10-amd64",
        "vmlinuz-6.1.0-9-amd64",
        "vmlinuz-6.1.0-1-amd64",
        "vmlinuz-5.10.0-28-amd64",
        "vmlinuz-6.1.0-10-amd64~rc1",
        "vmlinuz-6.1.0-010a",
    ]
    expected = subprocess.run(
        ["sort", "-V"], input="\n".join(names) + "\n", capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(names, key=version_key) == expected
    assert compare_versions("1.0", "1.0") == 0
    assert compare_versions("1.0~rc1", "1.0") < 0


def test_sed_expressions_like_sed() -> None:
    for expr, path in [
        ("s|vmlinuz|initrd.img|", "boot/vmlinuz-6.1"),
        (r"s|vmlinuz-\(.*\)|initramfs-\1.img|", "boot/vmlinuz-6.1.0"),
        ("s,linux,&-x,", "boot/x/loader/linux"),
        ("s|a|b|g", "banana"),
    ]:
        expected = subprocess.run(
            ["sed", expr], input=path, capture_output=True, text=True, check=True
        ).stdout
        assert parse_sed(expr)(path) == expected
    with pytest.raises(ImageError):
        parse_sed("y|a|b|")
    with pytest.raises(ImageError):
        parse_rule("vmlinuz s|unterminated")


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def write_two_kernels(tree: Path) -> None:
    """Kernels 6.1.0-9 and 6.1.0-10 with their initrds: version order is not name order."""
    for number in (10, 9):
        write(tree, f"boot/vmlinuz-6.1.0-{number}-amd64", f"k{number}")
        write(tree, f"boot/initrd.img-6.1.0-{number}-amd64", f"i{number}")


def test_symlinks_preferred_and_resolved_inside_the_image(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write_two_kernels(tree)
    # Debian's kernel-img.conf links, absolute: they must resolve in the tree, not on the host
    (tree / "vmlinuz").symlink_to("/boot/vmlinuz-6.1.0-9-amd64")
    (tree / "initrd.img").symlink_to("/boot/initrd.img-6.1.0-9-amd64")
    pair = find_kernel(DirView(tree))
    assert (pair.kernel, pair.kernel_real) == ("vmlinuz", "boot/vmlinuz-6.1.0-9-amd64")
    assert pair.initrd_real == "boot/initrd.img-6.1.0-9-amd64"
    info = extract_kernel(tree, tmp_path, None)
    assert info.version == "6.1.0-9-amd64"
    assert (tmp_path / "vmlinuz").read_text() == "k9"
    # a link leading out of the tree ('..' past the root) stays inside it
    (tree / "vmlinuz").unlink()
    (tree / "vmlinuz").symlink_to("../../../../../../boot/vmlinuz-6.1.0-10-amd64")
    assert find_kernel(DirView(tree)).kernel_real == "boot/vmlinuz-6.1.0-10-amd64"


def test_other_layouts_and_kernel_without_initrd(tmp_path: Path) -> None:
    fedora = tmp_path / "fedora"
    write(fedora, "boot/vmlinuz-6.5.6-300.fc39.x86_64", "k")
    write(fedora, "boot/initramfs-6.5.6-300.fc39.x86_64.img", "i")
    assert find_kernel(DirView(fedora)).initrd == "boot/initramfs-6.5.6-300.fc39.x86_64.img"
    live = tmp_path / "live"
    write(live, "casper/vmlinuz", "k")
    write(live, "casper/initrd.lz", "i")
    assert find_kernel(DirView(live)).initrd == "casper/initrd.lz"
    bare = tmp_path / "bare"
    write(bare, "boot/vmlinuz-6.1.0-3-amd64", "k")
    pair = find_kernel(DirView(bare))
    assert pair.kernel_real == "boot/vmlinuz-6.1.0-3-amd64" and pair.initrd is None
    with pytest.raises(KernelNotFound):
        find_kernel(DirView(tmp_path / "empty"))


def test_user_rule_comes_first(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for v in ("6.1.0-1-amd64", "6.1.0-10-amd64"):
        write(tree, f"boot/vmlinuz-{v}", v)
        write(tree, f"boot/initrd.img-{v}", v)
    pair = find_kernel(DirView(tree), "vmlinuz-6.1.0-1-* s|vmlinuz|initrd.img|")
    assert pair.kernel_real == "boot/vmlinuz-6.1.0-1-amd64"


def test_bzimage_header_version(tmp_path: Path) -> None:
    """A kernel named plain 'vmlinuz' gets its version from the bzImage setup header."""
    image = bytearray(0x4000)
    image[0x202:0x206] = b"HdrS"
    image[0x20E:0x210] = (0x1000).to_bytes(2, "little")
    text = b"6.1.0-13-amd64 (debian-kernel@lists.debian.org) #1 SMP\0"
    image[0x1200 : 0x1200 + len(text)] = text
    tree = tmp_path / "tree"
    (tree / "casper").mkdir(parents=True)
    (tree / "casper/vmlinuz").write_bytes(bytes(image))
    (tree / "casper/initrd").write_text("i")
    assert extract_kernel(tree, tmp_path, None).version == "6.1.0-13-amd64"


def squash(tree: Path, output: Path) -> Path:
    subprocess.run(
        [
            "mksquashfs",
            str(tree),
            str(output),
            "-noappend",
            "-quiet",
            "-no-progress",
            "-comp",
            "gzip",
        ],
        check=True,
        capture_output=True,
    )
    return output


def test_extract_from_squashfs_lists_then_extracts_two_files(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write_two_kernels(tree)
    write(tree, "lib/modules/6.1.0-10-amd64/modules.dep", "")
    write(tree, "usr/share/big", "x" * 100000)
    (tree / "a b -> c").mkdir()  # an awkward name in the listing
    image = squash(tree, tmp_path / "root.squashfs")
    dest = tmp_path / "dest"
    dest.mkdir()
    info = extract_kernel_from_squashfs(image, dest, None)
    assert info.version == "6.1.0-10-amd64" and info.kernel_source == "boot/vmlinuz-6.1.0-10-amd64"
    assert sorted(os.listdir(dest)) == ["initrd.img", "vmlinuz"]
    assert (dest / "vmlinuz").read_text() == "k10" and (dest / "initrd.img").read_text() == "i10"
    assert (dest / "initrd.img").stat().st_mode & 0o777 == 0o644


def publish_fixture(root: Path, tmp_path: Path) -> Path:
    """A published image 'deb' as netboot image would leave it (built here directly)."""
    tree = tmp_path / "tree"
    for v in ("6.1.0-1-amd64", "6.1.0-10-amd64"):
        write(tree, f"boot/vmlinuz-{v}", f"kernel {v}")
        write(tree, f"boot/initrd.img-{v}", f"initrd {v}")
    version = root / "images/deb/versions/20240101-000000"
    version.mkdir(parents=True)
    squash(tree, version / "root.squashfs")
    extract_kernel(tree, version, None)
    (version / "manifest.json").write_text(
        json.dumps({"name": "deb", "version": version.name, "kernel_version": "6.1.0-10-amd64"})
    )
    (root / "images/deb/current").symlink_to("versions/20240101-000000")
    return version


def test_kernel_cmd_publishes_a_new_version_sharing_the_squashfs(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    old = publish_fixture(root, tmp_path)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    result = run_netboot(
        "kernel", "--root", str(root), "-k", "vmlinuz-6.1.0-1-* s|vmlinuz|initrd.img|", "deb"
    )
    assert result.returncode == 0, result.stderr
    current = root / "images/deb" / os.readlink(root / "images/deb/current")
    assert current != old and os.readlink(root / "images/deb/previous").endswith(old.name)
    assert (current / "vmlinuz").read_text() == "kernel 6.1.0-1-amd64"
    assert (current / "initrd.img").read_text() == "initrd 6.1.0-1-amd64"
    assert os.path.samefile(current / "root.squashfs", old / "root.squashfs")
    manifest = json.loads((current / "manifest.json").read_text())
    assert manifest["kernel_version"] == "6.1.0-1-amd64" and manifest["version"] == current.name
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # published: untouched

    again = run_netboot(
        "kernel", "--root", str(root), "-k", "vmlinuz-6.1.0-1-* s|vmlinuz|initrd.img|", "deb"
    )
    assert again.returncode == 0 and "already has that kernel" in again.stdout
    assert len(list((root / "images/deb/versions").iterdir())) == 2


def kernel_of_source(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`netboot kernel` with the served root and the base dir (of sources) under tmp_path."""
    return run_netboot(
        "kernel", "--root", str(tmp_path / "srv"), "--base-dir", str(tmp_path / "base"), *args
    )


@pytest.mark.root  # the source is mounted
def test_kernel_cmd_output_from_a_mounted_source(tmp_path: Path) -> None:
    base = tmp_path / "base"
    write(base / "chroot", "boot/vmlinuz-6.1.0-7-amd64", "k7")
    write(base / "chroot", "boot/initrd.img-6.1.0-7-amd64", "i7")
    out = tmp_path / "out"
    result = kernel_of_source(tmp_path, "--output", str(out), "chroot")
    assert result.returncode == 0, result.stderr
    assert (out / "vmlinuz").read_text() == "k7" and (out / "initrd.img").read_text() == "i7"
    assert "kernel 6.1.0-7-amd64" in result.stdout
    assert str(tmp_path) not in Path("/proc/mounts").read_text()


@pytest.mark.root  # the source is mounted
def test_kernel_cmd_errors_are_one_line(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "empty/etc").mkdir(parents=True)
    result = kernel_of_source(tmp_path, "--output", str(tmp_path / "out"), "empty")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("netboot kernel: no kernel found")
    assert len(result.stderr.strip().splitlines()) == 1
    missing = kernel_of_source(tmp_path, "nosuch")
    assert missing.returncode == 1
    assert (
        missing.stderr.strip() == "netboot kernel: nosuch has no published version; "
        "run netboot image first"
    )
