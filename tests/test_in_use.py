"""Versions in use: the server writes them from its client records, the builder reads them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from netboot import layout
from netboot.image.publish import prune
from netboot.in_use import IN_USE_FILE, recently_used, write_usage
from testbed.lan import Lan


def versions(root: Path, name: str, *names: str) -> Path:
    for version in names:
        layout.version_dir(root, name, version).mkdir(parents=True)
    return layout.image_dir(root, name)


def test_usage_merges_keeps_the_latest_and_drops_unpublished(tmp_path: Path) -> None:
    image_dir = versions(tmp_path, "deb", "v1", "v2")
    write_usage(tmp_path, {"deb": {"v1": 100.0, "gone": 50.0}})
    write_usage(tmp_path, {"deb": {"v1": 90.0, "v2": 200.0}})  # a restarted server
    assert json.loads((image_dir / IN_USE_FILE).read_text()) == {"v1": 100.0, "v2": 200.0}
    assert write_usage(tmp_path, {"deb": {"v2": 150.0}}) == []  # nothing new: no write
    assert write_usage(tmp_path, {"other": {"v1": 1.0}}) == []  # no such image


def test_recently_used_honours_the_window(tmp_path: Path) -> None:
    image_dir = versions(tmp_path, "deb", "old", "new")
    now = time.time()
    write_usage(tmp_path, {"deb": {"old": now - 10 * 86400, "new": now - 3600}})
    assert recently_used(image_dir, 30, now) == {"old", "new"}
    assert recently_used(image_dir, 7, now) == {"new"}
    assert recently_used(image_dir, 0, now) == set()
    (image_dir / IN_USE_FILE).write_text("{not json")
    assert recently_used(image_dir, 30, now) == set()


def test_prune_skips_versions_in_use(tmp_path: Path) -> None:
    image_dir = versions(tmp_path, "deb", "v1", "v2", "v3", "v4")
    write_usage(tmp_path, {"deb": {"v1": time.time()}})
    removed, kept = prune(image_dir, 1, in_use_days=30)
    assert (removed, kept) == (["v2", "v3"], ["v1"])
    assert sorted(p.name for p in (image_dir / layout.VERSIONS).iterdir()) == ["v1", "v4"]


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


@pytest.mark.netns
def test_server_records_the_version_a_client_fetched(lan: Lan) -> None:
    directory = layout.version_dir(lan.root, "inuse", "20261201-000000")
    directory.mkdir(parents=True)
    (directory / layout.KERNEL).write_bytes(b"kernel")
    path = "/images/inuse/versions/20261201-000000/vmlinuz"
    assert lan.curl(path, "-f").stdout == "kernel"
    in_use = layout.image_dir(lan.root, "inuse") / IN_USE_FILE
    assert wait_for(in_use.exists, timeout=20)
    seen = json.loads(in_use.read_text())
    assert list(seen) == ["20261201-000000"] and seen["20261201-000000"] > time.time() - 60
