"""The manifest type and the publish transaction shared by `netboot image` and `netboot
kernel`: pure unit tests on a temporary directory, no root needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netboot import layout
from netboot.image import publish
from netboot.image.manifest import Manifest

BUILT = Manifest(
    name="deb",
    version="20240506-070809",
    size=3,
    sha256="ab" * 32,
    kernel_version="6.1.0-21-amd64",
    kernel="boot/vmlinuz-6.1.0-21-amd64",
    initrd="boot/initrd.img-6.1.0-21-amd64",
    created="2024-05-06T07:08:09Z",
    source="deb",
    mksquashfs_params=("-comp", "zstd"),
)


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    path = BUILT.write(tmp_path)
    assert path == tmp_path / layout.MANIFEST
    assert path.stat().st_mode & 0o777 == 0o644
    assert Manifest.read(tmp_path) == BUILT


def test_the_json_is_what_readers_always_got(tmp_path: Path) -> None:
    data = json.loads(BUILT.write(tmp_path).read_text())
    assert data == {
        "name": "deb",
        "version": "20240506-070809",
        "size": 3,
        "sha256": "ab" * 32,
        "kernel_version": "6.1.0-21-amd64",
        "kernel": "boot/vmlinuz-6.1.0-21-amd64",
        "initrd": "boot/initrd.img-6.1.0-21-amd64",
        "standalone_initrd": False,
        "created": "2024-05-06T07:08:09Z",
        "source": "deb",
        "cleanup": True,
        "mksquashfs_params": ["-comp", "zstd"],
    }  # no kernel_from: only `netboot kernel` writes it
    assert list(data) == sorted(data)


def test_an_older_manifest_still_reads(tmp_path: Path) -> None:
    # before standalone images: no standalone_initrd; a key this version does not know
    old = {
        "name": "deb",
        "version": "20230101-000000",
        "size": 10,
        "sha256": "cd" * 32,
        "kernel_version": "5.10.0-20-amd64",
        "kernel": "vmlinuz",
        "initrd": None,
        "created": "2023-01-01T00:00:00Z",
        "source": "/",
        "cleanup": False,
        "mksquashfs_params": ["-comp", "xz"],
        "builder": "netboot 0.0.1",
    }
    (tmp_path / layout.MANIFEST).write_text(json.dumps(old))
    manifest = Manifest.read(tmp_path)
    assert manifest.kernel_version == "5.10.0-20-amd64" and manifest.initrd is None
    assert manifest.standalone_initrd is False and manifest.cleanup is False
    assert manifest.mksquashfs_params == ("-comp", "xz")
    assert manifest.extra == {"builder": "netboot 0.0.1"}
    derived = manifest.derive(version="20240101-000000", kernel_from="deb")
    assert derived.to_dict()["builder"] == "netboot 0.0.1"  # kept for whoever wrote it
    assert derived.created != manifest.created


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"kernel_version": 6, "size": true}'])
def test_a_broken_manifest_reads_as_defaults(tmp_path: Path, text: str) -> None:
    (tmp_path / layout.MANIFEST).write_text(text)
    manifest = Manifest.read(tmp_path)
    assert manifest.kernel_version == "" and manifest.size == 0 and manifest.created == ""


def staged_file(staged: publish.Publication, content: bytes = b"sq") -> None:
    (staged.staging / layout.SQUASHFS).write_bytes(content)


def test_publication_switches_current_and_previous_and_prunes(tmp_path: Path) -> None:
    image_dir = tmp_path / "images/deb"
    published = []
    for _ in range(3):  # three, not more: a pruned id is free again within its second
        with publish.publication(image_dir) as staged:
            staged_file(staged)
            staged.commit(Manifest("deb", staged.version), keep=2)
        assert staged.directory == image_dir / "versions" / staged.version
        published.append(staged.version)
    assert publish.link_target(image_dir, layout.CURRENT) == published[-1]
    assert publish.link_target(image_dir, layout.PREVIOUS) == published[-2]
    assert publish.published_versions(image_dir) == sorted(published[-2:])
    assert staged.pruned == [published[0]]
    assert Manifest.read(staged.directory).version == published[-1]
    assert oct(os.stat(staged.directory).st_mode & 0o777) == "0o755"


def test_a_failed_publication_leaves_nothing(tmp_path: Path) -> None:
    image_dir = tmp_path / "images/deb"
    with pytest.raises(RuntimeError), publish.publication(image_dir) as staged:
        staged_file(staged)
        raise RuntimeError("mksquashfs died")
    assert not staged.staging.exists()
    assert publish.published_versions(image_dir) == []
    assert publish.link_target(image_dir, layout.CURRENT) is None


def test_a_publication_without_commit_leaves_nothing(tmp_path: Path) -> None:
    image_dir = tmp_path / "images/deb"
    with publish.publication(image_dir) as staged:
        staged_file(staged)  # e.g. `netboot kernel` finds the kernel already current
    assert not staged.staging.exists() and staged.directory is None
    assert list((image_dir / layout.VERSIONS).iterdir()) == []
