"""Prometheus metrics of one server, on a registry of its own (tests run several servers).

Two kinds of source, each read the safe way:
- the services' `stats` Counters belong to the main loop: `/metrics` copies them there
  (`on_loop`) and hands the copy to `SnapshotCollector`, which yields it under a lock;
- boot steps and HTTP requests are observed where they happen (records are written from
  both threads, HTTP requests on the HTTP thread): prometheus_client metrics are
  thread-safe, so those are plain Counter/Histogram objects.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# the steps of a boot, in order, as the client records name them
BOOT_STEPS = ("tftp", "script", "kernel", "initrd", "addon", "image", "settings")
DHCP_STEP_PREFIXES = ("dhcp-offer", "dhcp-ack", "proxy-ack")
FINAL_STEPS = ("image", "settings")
# a DHCP packet this long after a client's last step starts a new boot
NEW_BOOT_AFTER = 600.0
# clients idle this long are "idle", whatever step they reached (matches the status page)
IDLE_AFTER = 300.0
MAX_TRACKED = 10000
# 50 ms .. 30 min: a PXE ROM's TFTP step up to a slow image download
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
TFTP_OUTCOMES = ("completed", "timeouts", "aborted", "read_errors")


def is_dhcp_answer(kind: str) -> bool:
    return kind.startswith(DHCP_STEP_PREFIXES)


def boot_stage(events: Iterable[dict[str, Any]]) -> str:
    """The last boot step a client's events show ("dhcp" when it only got an answer)."""
    stage = "seen"
    for event in events:
        kind = event.get("kind", "")
        if kind in BOOT_STEPS:
            stage = kind
        elif is_dhcp_answer(kind):
            stage = "dhcp"
    return stage


class BootTimer:
    """Seconds from a client's first DHCP answer to each later boot step, as a histogram.

    Called from `ClientRecords.event` on whichever thread wrote the event; its own lock
    keeps the per-client start times consistent."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._lock = threading.Lock()
        self._starts: dict[str, float] = {}
        # least recently updated first: forgetting the oldest is O(1), whatever the MACs
        self._last: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __call__(self, mac: str, kind: str, when: float) -> None:
        with self._lock:
            last_kind, last_time = self._last.get(mac, ("", 0.0))
            self._last[mac] = (kind, when)
            self._last.move_to_end(mac)
            if is_dhcp_answer(kind):
                new_boot = last_kind in FINAL_STEPS or when - last_time > NEW_BOOT_AFTER
                if mac not in self._starts or new_boot:
                    self._starts[mac] = when
                self._forget_oldest()
                return
            start = self._starts.get(mac)
        if start is not None and kind in BOOT_STEPS:
            self.histogram.labels(step=kind).observe(max(0.0, when - start))

    def _forget_oldest(self) -> None:
        """Keep at most MAX_TRACKED clients, the least recently seen go first (caller holds
        the lock). A scan for the oldest here would cost every DHCP answer O(MAX_TRACKED)
        once a flood of made-up MACs filled the table."""
        while len(self._last) > MAX_TRACKED:
            mac, _ = self._last.popitem(last=False)
            self._starts.pop(mac, None)


class SnapshotCollector(Collector):
    """Yields the counters of the last snapshot handed to it (see module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, int]] = {}
        self._clients: list[dict[str, Any]] = []

    def update(self, stats: dict[str, dict[str, int]], clients: list[dict[str, Any]]) -> None:
        with self._lock:
            self._stats, self._clients = stats, clients

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            stats, clients = self._stats, self._clients
        yield from dhcp_families(stats.get("dhcp", {}))
        yield from tftp_families(stats.get("tftp", {}))
        yield clients_family(clients, time.time())


def dhcp_families(stats: dict[str, int]) -> Iterator[Metric]:
    packets = CounterMetricFamily(
        "netboot_dhcp_packets",
        "DHCP packets by direction (received requests, sent replies) and message type",
        labels=["direction", "type"],
    )
    outcomes = CounterMetricFamily(
        "netboot_dhcp_requests",
        "DHCP datagrams by what the server did with them (received, offers, acks, "
        "ignored, malformed, no_answer, ...)",
        labels=["outcome"],
    )
    for key, value in sorted(stats.items()):
        direction, _, message = key.partition(":")
        if message and direction in ("in", "out"):
            packets.add_metric(["received" if direction == "in" else "sent", message], value)
        else:
            outcomes.add_metric([key], value)
    yield packets
    yield outcomes


def tftp_families(stats: dict[str, int]) -> Iterator[Metric]:
    transfers = CounterMetricFamily(
        "netboot_tftp_transfers",
        "TFTP transfers by outcome (started, completed, ...)",
        labels=["outcome"],
    )
    transfers.add_metric(["started"], stats.get("transfers", 0))
    for outcome in TFTP_OUTCOMES:
        transfers.add_metric([outcome], stats.get(outcome, 0))
    sent = CounterMetricFamily("netboot_tftp_sent_bytes", "Bytes of completed TFTP transfers")
    sent.add_metric([], stats.get("bytes", 0))
    other = CounterMetricFamily(
        "netboot_tftp_packets",
        "TFTP requests and packets by event (refused, busy, malformed, retransmits, ...)",
        labels=["event"],
    )
    skip = {"transfers", "bytes", *TFTP_OUTCOMES}
    for key, value in sorted(stats.items()):
        if key not in skip:
            other.add_metric([key], value)
    yield transfers
    yield sent
    yield other


def clients_family(clients: list[dict[str, Any]], now: float) -> Metric:
    gauge = GaugeMetricFamily(
        "netboot_clients",
        f"Clients by the last boot step they took (idle: nothing for {IDLE_AFTER:.0f} s)",
        labels=["stage"],
    )
    counts = dict.fromkeys(("seen", "dhcp", *BOOT_STEPS, "idle"), 0)
    for client in clients:
        if now - client.get("last_seen", now) > IDLE_AFTER:
            counts["idle"] += 1
        else:
            counts[boot_stage(client.get("events", []))] += 1
    for stage, count in counts.items():
        gauge.add_metric([stage], count)
    return gauge


class ServerMetrics:
    """Every metric of one server and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.snapshot = SnapshotCollector()
        self.registry.register(self.snapshot)
        self.http_requests = Counter(
            "netboot_http_requests",
            "HTTP requests by kind (script, settings, kernel, initrd, image, api, ...) and status",
            ["kind", "status"],
            registry=self.registry,
        )
        self.boot_step_seconds = Histogram(
            "netboot_boot_step_seconds",
            "Seconds from a client's first DHCP answer of a boot to each later boot step",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.boot_timer = BootTimer(self.boot_step_seconds)

    def exposition(self, stats: dict[str, dict[str, int]], clients: list[dict[str, Any]]) -> bytes:
        """The text format, with the services' counters as of `stats`."""
        self.snapshot.update(stats, clients)
        return generate_latest(self.registry)
