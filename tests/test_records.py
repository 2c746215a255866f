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


def test_log_lines_are_budgeted_and_the_gap_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A storm logs at most `log_lines` steps a second; every step is still recorded, and
    the first line after the flood says how many lines were left out."""
    clock = [100.0]
    caplog.set_level(logging.INFO, logger="netboot.clients")
    records = ClientRecords(log_lines=5)
    assert records._log_budget is not None
    records._log_budget.clock = lambda: clock[0]
    for i in range(50):
        records.event(mac(i), "dhcp-offer", arch=7, boot_file="ipxe/snponly.efi")
    assert len(records) == 50
    assert all(records.get(mac(i)) is not None for i in range(50))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"client {mac(i)} dhcp-offer arch=7 boot_file=ipxe/snponly.efi" for i in range(5)
    ]
    clock[0] += 1
    records.event(mac(99), "tftp", file="x")
    gap, step = [r.getMessage() for r in caplog.records][5:]
    assert gap.startswith("client log lines: 45 not written since ")
    assert "over 5 a second" in gap
    assert step == f"client {mac(99)} tftp file=x"


def test_unlimited_log_lines_with_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="netboot.clients")
    records = ClientRecords(log_lines=0)
    for i in range(2000):
        records.event(mac(i), "dhcp-offer")
    assert len(caplog.records) == 2000


def test_rendered_details_are_reused_but_never_mixed_up() -> None:
    """Details are rendered once per distinct detail; a made-up value per client (hostile
    hostnames) neither grows the cache past its bound nor leaks into another record."""
    records = ClientRecords(log_lines=0)
    for i in range(3 * records_mod.MAX_RENDERED):
        records.event(mac(i % 50), "dhcp-offer", arch=7, hostname=f"pc-{i}")
        assert len(records._rendered) <= records_mod.MAX_RENDERED
    final = 3 * records_mod.MAX_RENDERED - 1
    last = records.as_dict(mac(final % 50))
    assert last is not None and last["events"][-1]["hostname"] == f"pc-{final}"
    records.event(mac(1), "script", images=["a", "b"])  # unhashable: rendered each time
    stored = records.as_dict(mac(1))
    assert stored is not None and stored["events"][-1]["images"] == ["a", "b"]
