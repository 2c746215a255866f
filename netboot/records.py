"""One in-memory record per client MAC: every boot step lands here and in one log line.

DHCP knows a client by MAC; TFTP and HTTP only see an IP address. The store learns
IP -> MAC from DHCP (requested address, ciaddr, leases) and from iPXE's `?mac=` query
parameters, and falls back to the kernel's neighbour table, so every step is tied to the
machine that took it. Access is locked, so a reader on another thread (the HTTP thread,
when HTTP has one) gets a consistent copy: `as_dict` and `snapshot` copy under the lock;
`get` returns the live record, for code on the writers' own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("netboot.clients")

MAX_EVENTS_PER_CLIENT = 200
MAX_CLIENTS = 10000
ARP_TABLE = Path("/proc/net/arp")
# details of a step that describe the client rather than the step: kept in its facts
FACTS = (
    "arch", "firmware", "ipxe", "image", "version", "hostname",
    "manufacturer", "product", "serial",
)  # fmt: skip


@dataclass
class Event:
    time: float
    kind: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, **self.detail}


@dataclass
class ClientRecord:
    mac: str
    first_seen: float
    last_seen: float
    ip: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS_PER_CLIENT))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def as_dict(self) -> dict[str, Any]:
        return {
            "mac": self.mac,
            "ip": self.ip,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "facts": dict(self.facts),
            "events": [e.as_dict() for e in self.events],
        }


def normalize_mac(mac: str) -> str:
    """'52-54-00-AB-CD-EF', '525400abcdef' or '52:54:00:ab:cd:ef' -> '52:54:00:ab:cd:ef'."""
    digits = "".join(c for c in mac.lower() if c in "0123456789abcdef")
    if len(digits) != 12:
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def neighbour_mac(ip: str, table: Path = ARP_TABLE) -> str | None:
    """Look the IP up in the kernel's ARP table (no subprocess, a small /proc read)."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if len(cols) >= 4 and cols[0] == ip and cols[3] != "00:00:00:00:00:00":
            return cols[3].lower()
    return None


class ClientRecords:
    """The store every transport writes into and status pages read from."""

    def __init__(self, on_event: Callable[[str, str, float], None] | None = None) -> None:
        """`on_event(mac, kind, time)` is called after each recorded step, outside the lock,
        on the writer's thread (netboot/metrics.py times boot steps with it)."""
        self.on_event = on_event
        self._lock = threading.Lock()
        self._clients: dict[str, ClientRecord] = {}
        self._ip_to_mac: dict[str, str] = {}

    def learn(self, mac: str, ip: str | None) -> None:
        """Remember that this MAC uses this IP (from DHCP, a lease or a query parameter)."""
        if not ip or ip == "0.0.0.0":
            return
        mac = normalize_mac(mac)
        with self._lock:
            self._ip_to_mac[ip] = mac
            self._record(mac, time.time()).ip = ip

    def mac_for_ip(self, ip: str) -> str | None:
        with self._lock:
            mac = self._ip_to_mac.get(ip)
        if mac is None:
            mac = neighbour_mac(ip)
            if mac is not None:
                with self._lock:
                    self._ip_to_mac[ip] = mac
        return mac

    def event(
        self, mac: str | None, kind: str, *, ip: str | None = None, **detail: Any
    ) -> ClientRecord | None:
        """Record one step. Without a MAC, the IP is used to find it; failing that the step
        is only logged (a stray request from a machine we never saw)."""
        if mac is None and ip:
            mac = self.mac_for_ip(ip)
        now = time.time()
        where = f" ip={ip}" if ip else ""
        parts = " ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, ""))
        log.info("client %s %s%s %s", mac or "unknown", kind, where, parts)
        if mac is None:
            return None
        mac = normalize_mac(mac)
        with self._lock:
            record = self._record(mac, now)
            record.last_seen = now
            if ip and ip != "0.0.0.0":
                record.ip = ip
                self._ip_to_mac[ip] = mac
            record.events.append(Event(now, kind, dict(detail)))
            for fact in FACTS:
                if detail.get(fact) not in (None, ""):
                    record.facts[fact] = detail[fact]
        if self.on_event is not None:
            self.on_event(mac, kind, now)
        return record

    def _record(self, mac: str, now: float) -> ClientRecord:
        """The record of mac, created if new (caller holds the lock)."""
        record = self._clients.get(mac)
        if record is None:
            if len(self._clients) >= MAX_CLIENTS:
                oldest = min(self._clients.values(), key=lambda r: r.last_seen)
                del self._clients[oldest.mac]
            record = ClientRecord(mac=mac, first_seen=now, last_seen=now)
            self._clients[mac] = record
        return record

    def get(self, mac: str) -> ClientRecord | None:
        with self._lock:
            return self._clients.get(normalize_mac(mac))

    def as_dict(self, mac: str) -> dict[str, Any] | None:
        """A copy of one record, taken under the lock (the record itself keeps changing)."""
        with self._lock:
            record = self._clients.get(normalize_mac(mac))
            return record.as_dict() if record is not None else None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in sorted(self._clients.values(), key=lambda r: r.mac)]
