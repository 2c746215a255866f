"""The metrics' own logic, without a server: boot-step timing and how counters map to
metric families (the served /metrics is tested in test_status_web.py)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from netboot.metrics import MAX_TRACKED, NEW_BOOT_AFTER, ServerMetrics, boot_stage

MAC = "52:54:00:00:00:01"


def samples(metrics: ServerMetrics, stats=None, clients=None) -> dict:
    text = metrics.exposition(stats or {}, clients or []).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_steps_are_timed_from_the_first_dhcp_answer_of_a_boot() -> None:
    metrics = ServerMetrics()
    timer = metrics.boot_timer
    timer(MAC, "dhcp-offer", 100.0)
    timer(MAC, "tftp", 100.5)
    timer(MAC, "dhcp-offer", 101.0)  # iPXE's own DHCP: the same boot
    timer(MAC, "kernel", 103.0)
    timer(MAC, "image", 110.0)
    timer(MAC, "dhcp-offer", 500.0)  # after the image step: a new boot
    timer(MAC, "script", 502.0)
    timer("52:54:00:00:00:02", "kernel", 5.0)  # no DHCP answer seen: not timed
    got = samples(metrics)
    assert got[("netboot_boot_step_seconds_sum", (("step", "kernel"),))] == 3.0
    assert got[("netboot_boot_step_seconds_count", (("step", "kernel"),))] == 1
    assert got[("netboot_boot_step_seconds_sum", (("step", "image"),))] == 10.0
    assert got[("netboot_boot_step_seconds_sum", (("step", "script"),))] == 2.0
    assert got[("netboot_boot_step_seconds_bucket", (("le", "0.5"), ("step", "tftp")))] == 1


def test_a_long_silence_starts_a_new_boot() -> None:
    metrics = ServerMetrics()
    metrics.boot_timer(MAC, "dhcp-offer", 0.0)
    metrics.boot_timer(MAC, "tftp", 1.0)
    metrics.boot_timer(MAC, "dhcp-offer", 2.0 + NEW_BOOT_AFTER)
    metrics.boot_timer(MAC, "tftp", 3.0 + NEW_BOOT_AFTER)
    got = samples(metrics)
    assert got[("netboot_boot_step_seconds_sum", (("step", "tftp"),))] == 2.0


def test_the_least_recently_seen_clients_are_forgotten_first() -> None:
    """A flood of made-up MACs fills the table; the oldest go, a client seen again stays
    (its boot still timed from its first answer)."""
    metrics = ServerMetrics()
    timer = metrics.boot_timer
    timer(MAC, "dhcp-offer", 0.0)
    flood = [
        f"02:00:00:{i >> 16:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        for i in range(MAX_TRACKED + 10)
    ]
    for i, mac in enumerate(flood):
        timer(mac, "dhcp-offer", 1.0 + i * 1e-4)
        if i == MAX_TRACKED // 2:
            timer(MAC, "tftp", 2.0)  # MAC seen again mid-flood
    timer(MAC, "kernel", 4.0)  # still tracked: timed from its first answer at 0
    timer(flood[0], "kernel", 4.0)  # among the oldest: forgotten, not timed
    got = samples(metrics)
    assert got[("netboot_boot_step_seconds_sum", (("step", "kernel"),))] == 4.0
    assert got[("netboot_boot_step_seconds_count", (("step", "kernel"),))] == 1


def test_counters_become_labelled_families() -> None:
    stats = {
        "dhcp": {"received": 5, "in:DISCOVER": 3, "out:OFFER": 2, "ignored": 2, "offers": 2},
        "tftp": {"transfers": 4, "completed": 3, "timeouts": 1, "bytes": 1234, "busy": 7},
    }
    got = samples(ServerMetrics(), stats)
    assert got[("netboot_dhcp_packets_total", (("direction", "received"), ("type", "DISCOVER")))]
    assert got[("netboot_dhcp_packets_total", (("direction", "sent"), ("type", "OFFER")))] == 2
    assert got[("netboot_dhcp_requests_total", (("outcome", "ignored"),))] == 2
    assert ("netboot_dhcp_requests_total", (("outcome", "in:DISCOVER"),)) not in got
    assert got[("netboot_tftp_transfers_total", (("outcome", "started"),))] == 4
    assert got[("netboot_tftp_transfers_total", (("outcome", "timeouts"),))] == 1
    assert got[("netboot_tftp_sent_bytes_total", ())] == 1234
    assert got[("netboot_tftp_packets_total", (("event", "busy"),))] == 7


def test_clients_by_stage_and_idle() -> None:
    import time

    now = time.time()
    clients = [
        {"last_seen": now, "events": [{"kind": "dhcp-offer"}, {"kind": "kernel"}]},
        {"last_seen": now, "events": [{"kind": "proxy-ack"}]},
        {"last_seen": now - 3600, "events": [{"kind": "image"}]},
    ]
    got = samples(ServerMetrics(), clients=clients)
    assert got[("netboot_clients", (("stage", "kernel"),))] == 1
    assert got[("netboot_clients", (("stage", "dhcp"),))] == 1
    assert got[("netboot_clients", (("stage", "idle"),))] == 1
    assert got[("netboot_clients", (("stage", "image"),))] == 0
    assert boot_stage([{"kind": "tftp-failed"}]) == "seen"


def test_each_server_has_its_own_registry() -> None:
    one, two = ServerMetrics(), ServerMetrics()
    one.http_requests.labels(kind="script", status="200").inc()
    key = ("netboot_http_requests_total", (("kind", "script"), ("status", "200")))
    assert samples(one)[key] == 1
    assert key not in samples(two)
