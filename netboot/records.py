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
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netboot.ratelimit import LineBudget, limited
from netboot.untrusted import clip, for_log

log = logging.getLogger("netboot.clients")

MAX_EVENTS_PER_CLIENT = 64  # a boot is ~10 steps: a few boots' worth
MAX_CLIENTS = 10000  # default of server.max_clients
CLIENT_LOG_LINES = 500  # default of server.client_log_lines (a second)
MAX_RENDERED = 1024  # step details kept ready to store and log (a room has a few kinds)
CLIENT_IDLE_SECONDS = 7 * 86400  # default of server.client_idle_seconds
ARP_TABLE = Path("/proc/net/arp")
CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
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
    if CANONICAL_MAC.fullmatch(mac):  # what DHCP hands in: every step of a storm
        return mac
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
    """The store every transport writes into and status pages read from.

    Bounded whatever clients send: at most `max_clients` records (the least recently seen
    goes first), records idle for `idle_seconds` are dropped, the IP -> MAC map holds at most
    `2 * max_clients` addresses, and every client-supplied value is clipped before it is
    stored and escaped before it is logged."""

    def __init__(
        self,
        on_event: Callable[[str, str, float], None] | None = None,
        *,
        max_clients: int = MAX_CLIENTS,
        idle_seconds: float = CLIENT_IDLE_SECONDS,
        log_lines: int = CLIENT_LOG_LINES,
    ) -> None:
        """`on_event(mac, kind, time)` is called after each recorded step, outside the lock,
        on the writer's thread (netboot/metrics.py times boot steps with it). At most
        `log_lines` steps a second are logged (0: all); every step is recorded."""
        self.on_event = on_event
        self._log_budget = LineBudget(log_lines) if log_lines else None
        self._rendered: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}
        self.max_clients = max_clients
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, ClientRecord] = OrderedDict()  # least recent first
        self._ip_to_mac: OrderedDict[str, str] = OrderedDict()

    def learn(self, mac: str, ip: str | None) -> None:
        """Remember that this MAC uses this IP (from DHCP, a lease or a query parameter)."""
        if not ip or ip == "0.0.0.0":
            return
        mac = normalize_mac(mac)
        with self._lock:
            self._map_ip(ip, mac)
            self._record(mac, time.time()).ip = ip

    def mac_for_ip(self, ip: str) -> str | None:
        with self._lock:
            mac = self._ip_to_mac.get(ip)
        if mac is None:
            mac = neighbour_mac(ip)
            if mac is not None:
                with self._lock:
                    self._map_ip(ip, mac)
        return mac

    def event(
        self, mac: str | None, kind: str, *, ip: str | None = None, **detail: Any
    ) -> ClientRecord | None:
        """Record one step. Without a MAC, the IP is used to find it; failing that the step
        is only logged (a stray request from a machine we never saw)."""
        if mac is None and ip:
            mac = self.mac_for_ip(ip)
        now = time.time()
        detail, parts = self._render(detail)
        where = f" ip={for_log(ip)}" if ip else ""
        if mac is None:  # a machine we never saw: spoofed sources must not flood the log
            limited(log)("unknown", logging.INFO, "client unknown %s%s %s", kind, where, parts)
            return None
        mac = normalize_mac(mac)
        self._log(mac, kind, where, parts)
        with self._lock:
            record = self._record(mac, now)
            record.last_seen = now
            if ip and ip != "0.0.0.0":
                record.ip = ip
                self._map_ip(ip, mac)
            record.events.append(Event(now, kind, detail))
            for fact in FACTS:
                if detail.get(fact) not in (None, ""):
                    record.facts[fact] = detail[fact]
        if self.on_event is not None:
            self.on_event(mac, kind, now)
        return record

    def _render(self, detail: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The detail clipped for the record, and as `k=v` text for the log. Every client of
        a kind sends the same details (arch, boot file, port...), so the result is kept per
        distinct detail: a boot storm's thousands of steps are rendered a few times."""
        try:
            key = tuple(detail.items())
            hash(key)
        except TypeError:  # a list or dict among the values: render it each time
            key = ()
        known = self._rendered.get(key) if key else None
        if known is not None:
            return known
        clipped = {k: clip(v) if isinstance(v, str) else v for k, v in detail.items()}
        parts = " ".join(f"{k}={for_log(v)}" for k, v in clipped.items() if v not in (None, ""))
        if key:
            if len(self._rendered) >= MAX_RENDERED:  # made-up hostnames: start again
                self._rendered.clear()
            self._rendered[key] = (clipped, parts)
        return clipped, parts

    def _log(self, mac: str, kind: str, where: str, parts: str) -> None:
        """The step's log line, within the budget; the first line after a flood says how
        many were left out (the records kept them all)."""
        if self._log_budget is not None:
            taken = self._log_budget.take()
            if taken is None:
                return
            skipped, since = taken
            if skipped:
                log.info(
                    "client log lines: %d not written since %s (over %d a second); every "
                    "step is in the client records (/api/clients)",
                    skipped,
                    time.strftime("%H:%M:%S", time.localtime(since)),
                    self._log_budget.per_second,
                )
        log.info("client %s %s%s %s", mac, kind, where, parts)

    def _map_ip(self, ip: str, mac: str) -> None:
        """ip -> mac, most recent last; the oldest mapping goes past the bound (caller holds
        the lock). One MAC asking for 200,000 addresses must not grow it for good."""
        self._ip_to_mac[ip] = mac
        self._ip_to_mac.move_to_end(ip)
        while len(self._ip_to_mac) > 2 * self.max_clients:
            self._ip_to_mac.popitem(last=False)

    def _record(self, mac: str, now: float) -> ClientRecord:
        """The record of mac, created if new, moved to most recent (caller holds the
        lock). Idle records and, past the bound, the least recently seen are dropped."""
        record = self._clients.get(mac)
        if record is not None:
            self._clients.move_to_end(mac)
            return record
        self._expire(now)
        while len(self._clients) >= self.max_clients:
            self._clients.popitem(last=False)
        record = ClientRecord(mac=mac, first_seen=now, last_seen=now)
        self._clients[mac] = record
        return record

    def _expire(self, now: float) -> None:
        """Drop the records not seen for idle_seconds (the oldest are first in the dict)."""
        while self._clients:
            oldest = next(iter(self._clients.values()))
            if now - oldest.last_seen < self.idle_seconds:
                return
            del self._clients[oldest.mac]

    def get(self, mac: str) -> ClientRecord | None:
        with self._lock:
            return self._clients.get(normalize_mac(mac))

    def as_dict(self, mac: str) -> dict[str, Any] | None:
        """A copy of one record, taken under the lock (the record itself keeps changing)."""
        with self._lock:
            record = self._clients.get(normalize_mac(mac))
            return record.as_dict() if record is not None else None

    def booted_versions(self) -> dict[str, dict[str, float]]:
        """image -> version -> when a client that fetched it was last seen (netboot/in_use)."""
        usage: dict[str, dict[str, float]] = {}
        with self._lock:
            for record in self._clients.values():
                image, version = record.facts.get("image"), record.facts.get("version")
                if image and version:
                    versions = usage.setdefault(str(image), {})
                    versions[str(version)] = max(record.last_seen, versions.get(version, 0.0))
        return usage

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def snapshot(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Copies of the records in MAC order, `limit` of them from `offset` on (a page of
        /api/clients: only the page is copied and serialized)."""
        with self._lock:
            self._expire(time.time())
            macs = sorted(self._clients)
            end = None if limit is None else offset + limit
            return [self._clients[mac].as_dict() for mac in macs[offset:end]]
