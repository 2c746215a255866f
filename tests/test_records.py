"""Client records stay bounded whatever clients send (issue 12): a cap with least recently
seen eviction, idle ageing, a bounded IP -> MAC map, clipped values and one-line logs.
Pure: no sockets, no root."""

from __future__ import annotations

import logging

import pytest

from netboot import records as records_mod
from netboot.records import ClientRecords
from netboot.untrusted import MAX_STORED


def mac(i: int) -> str:
    return f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


def test_records_are_capped_least_recently_seen_first() -> None:
    records = ClientRecords(max_clients=100)
    records.event(mac(0), "dhcp-offer")
    for i in range(1, 1000):
        records.event(mac(i), "dhcp-offer")
        if i % 50 == 0:
            records.event(mac(0), "tftp")  # seen again: stays
    assert len(records) == 100
    assert records.get(mac(0)) is not None
    assert records.get(mac(999)) is not None
    assert records.get(mac(1)) is None


def test_idle_records_age_out(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(records_mod.time, "time", lambda: now[0])
    records = ClientRecords(idle_seconds=60)
    records.event(mac(1), "dhcp-offer")
    now[0] += 30
    records.event(mac(2), "dhcp-offer")
    now[0] += 40  # mac(1) idle 70 s, mac(2) 40 s
    assert [r["mac"] for r in records.snapshot()] == [mac(2)]


def test_ip_to_mac_is_bounded() -> None:
    """Issue 12: 200,000 REQUESTs with distinct requested addresses from one MAC grew the
    map for good."""
    records = ClientRecords(max_clients=10)
    for i in range(5000):
        records.learn(mac(1), f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(records._ip_to_mac) == 20
    assert records.mac_for_ip("10.0.19.135") == mac(1)  # the latest is kept


def test_client_strings_are_clipped_and_logged_on_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="netboot.clients")
    records = ClientRecords()
    hostile = "A" * 10_000 + "\nclient 52:54:00:00:00:01 FAKE\x1b[2J"
    records.event(mac(1), "dhcp-offer", hostname=hostile)
    stored = records.as_dict(mac(1))
    assert stored is not None
    assert len(stored["facts"]["hostname"]) <= MAX_STORED
    assert len(stored["events"][0]["hostname"]) <= MAX_STORED
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "\x1b" not in line and len(line) < 300


def test_snapshot_pages() -> None:
    records = ClientRecords()
    for i in range(25):
        records.event(mac(i), "script")
    page = records.snapshot(offset=20, limit=10)
    assert [r["mac"] for r in page] == [mac(i) for i in range(20, 25)]
    assert len(records.snapshot(limit=10)) == 10
