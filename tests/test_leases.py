"""The lease store and its file: round trips, coalesced atomic writes, corrupt files kept."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import pytest

from netboot.dhcp import leases as leases_mod
from netboot.dhcp.leases import LeaseFileError, LeaseStore, client_key


async def test_round_trip_keeps_leases_and_blocks(tmp_path: Path) -> None:
    path = tmp_path / "state" / "leases.json"
    store = LeaseStore(path)
    await store.load()  # a missing file and directory: empty, directory made
    now = time.time()
    store.bind("mac:52:54:00:00:00:01", "52:54:00:00:00:01", "10.0.0.10", now + 60, "pc01")
    store.bind("id:01525400000002", "52:54:00:00:00:02", "10.0.0.11", now + 60, "")
    store.block("10.0.0.12", now + 600, "declined by 52:54:00:00:00:03")
    store.block("10.0.0.13", now - 1, "ran out already")
    await store.save()
    assert [b["address"] for b in json.loads(path.read_text())["blocked"]] == ["10.0.0.12"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"

    again = LeaseStore(path)
    await again.load()
    assert [(x.client, x.address, x.hostname) for x in again.leases()] == [
        ("mac:52:54:00:00:00:01", "10.0.0.10", "pc01"),
        ("id:01525400000002", "10.0.0.11", ""),
    ]
    assert again.blocked("10.0.0.12", now) is not None
    assert not again.free_for("someone", "10.0.0.10", now)
    assert again.free_for("mac:52:54:00:00:00:01", "10.0.0.10", now)
    assert not again.dirty


async def test_a_client_holds_one_address_and_release_keeps_affinity(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.json")
    now = time.time()
    store.bind("c1", "52:54:00:00:00:01", "10.0.0.10", now + 60, "")
    store.bind("c1", "52:54:00:00:00:01", "10.0.0.11", now + 60, "")
    assert store.lease_at("10.0.0.10") is None and store.lease_at("10.0.0.11") is not None
    assert store.end("c1", "10.0.0.11", now)
    assert store.free_for("c2", "10.0.0.11", now + 1)
    assert store.lease_of("c1") is not None  # remembered: it gets it back if still free
    assert not store.end("c1", "10.0.0.11", now + 1)  # already ended


async def test_offers_hold_an_address_until_they_time_out(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.json")
    now = time.time()
    store.hold_offer("c1", "10.0.0.10", now + 30)
    assert not store.free_for("c2", "10.0.0.10", now)
    assert store.free_for("c2", "10.0.0.10", now + 31)
    store.drop_offer("c1")
    assert store.free_for("c2", "10.0.0.10", now)
    assert not store.dirty  # offers are never written


async def test_burst_of_changes_is_written_in_few_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "leases.json"
    store = LeaseStore(path)
    writes: list[bytes] = []
    real_write = leases_mod.write_atomically

    def counting_write(target: Path, payload: bytes) -> None:
        writes.append(payload)
        real_write(target, payload)

    monkeypatch.setattr(leases_mod, "write_atomically", counting_write)
    now = time.time()

    async def bind_and_save(n: int) -> None:
        store.bind(f"c{n}", f"52:54:00:00:00:{n:02x}", f"10.0.0.{n}", now + 60, "")
        await store.save()

    await asyncio.gather(*(bind_and_save(n) for n in range(1, 21)))
    assert len(writes) < 20
    saved = json.loads(path.read_text())
    assert sorted(x["address"] for x in saved["leases"]) == sorted(
        f"10.0.0.{n}" for n in range(1, 21)
    )
    assert os.listdir(tmp_path) == ["leases.json"]  # no temp files left


async def test_failed_write_raises_and_keeps_the_old_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = state / "leases.json"
    store = LeaseStore(path)
    await store.load()
    store.bind("c1", "52:54:00:00:00:01", "10.0.0.10", time.time() + 60, "")
    await store.save()
    before = path.read_bytes()
    store.bind("c2", "52:54:00:00:00:02", "10.0.0.11", time.time() + 60, "")
    # the directory vanishes (a file in its place): the write must fail loudly
    state.rename(tmp_path / "state-away")
    state.write_text("not a directory")
    with pytest.raises(OSError):
        await store.save()
    assert store.dirty
    state.unlink()
    (tmp_path / "state-away").rename(state)
    assert path.read_bytes() == before
    await store.save()  # the next write carries the change
    assert len(json.loads(path.read_text())["leases"]) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"format": "netboot-leases", "version": 1, "leases": [{"client": "c"}], "blocked": []}',
        b'{"format": "netboot-leases", "version": 99, "leases": [], "blocked": []}',
        b'{"format": "netboot-leases", "version": 1, "leases": [{"client": "c", "mac": "m",'
        b' "address": "10.0.0.300", "expires": 1, "hostname": ""}], "blocked": []}',
        b"\xff\xfe binary",
        b"[]",
    ],
)
async def test_corrupt_file_is_moved_aside_never_lost(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "leases.json"
    path.write_bytes(content)
    store = LeaseStore(path)
    with caplog.at_level(logging.ERROR, logger="netboot.dhcp.leases"):
        await store.load()
    assert store.leases() == []
    aside = [tmp_path / n for n in os.listdir(tmp_path) if n.startswith("leases.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert not path.exists()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and str(aside[0]) in messages[0]


async def test_unreadable_file_is_an_error_not_corruption(tmp_path: Path) -> None:
    path = tmp_path / "leases.json"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(LeaseFileError, match="cannot read lease file"):
        await LeaseStore(path).load()
    assert path.is_dir()


async def test_stale_temp_files_of_an_interrupted_write_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "leases.json"
    stale = tmp_path / ".tmp-leases.json.abc123"
    stale.write_text("half a write")
    await LeaseStore(path).load()
    assert not stale.exists()


def test_client_key_prefers_option_61() -> None:
    assert client_key(b"\x01\x52\x54\x00\x00\x00\x01", "52:54:00:00:00:01") == "id:01525400000001"
    assert client_key(None, "52:54:00:00:00:01") == "mac:52:54:00:00:00:01"


def test_reclaim_takes_the_oldest_offer_of_another_client_past_its_minimum_hold(
    tmp_path: Path,
) -> None:
    store = LeaseStore(tmp_path / "leases.json")
    store.hold_offer("a", "10.0.0.1", 100.0)
    store.hold_offer("b", "10.0.0.2", 105.0)
    store.hold_offer("me", "10.0.0.3", 90.0)
    assert store.reclaim_offer("me", 50.0, 99.0) is None  # both too fresh
    assert store.reclaim_offer("me", 50.0, 110.0) == "10.0.0.1"  # oldest first
    assert store.reclaim_offer("me", 50.0, 110.0) == "10.0.0.2"
    assert store.reclaim_offer("me", 50.0, 110.0) is None  # never its own offer
    assert store.offer_of("me", 50.0) is not None


def test_reclaim_takes_only_an_offer_of_the_pool_that_ran_dry(tmp_path: Path) -> None:
    """A relayed subnet's pool is dry: an offer held in another subnet frees nothing there."""
    store = LeaseStore(tmp_path / "leases.json")
    store.hold_offer("a", "10.0.0.1", 100.0)
    store.hold_offer("b", "10.1.2.100", 105.0)
    relayed = lambda address: address.startswith("10.1.2.")  # noqa: E731
    assert store.reclaim_offer("me", 50.0, 110.0, relayed) == "10.1.2.100"
    assert store.reclaim_offer("me", 50.0, 110.0, relayed) is None
    assert store.offer_of("a", 50.0) is not None  # the local offer is untouched
