"""Leases, offers and blocked addresses of the full DHCP server, and the file that keeps them.

The rule that matters: an ACK leaves only after the lease it grants is on disk. The file is
rewritten whole (it holds at most one entry per pool address) to a temporary file that is
fsync'ed, renamed over the old one, and the directory fsync'ed: after a crash or `kill -9`
the file is the old or the new version, never half of one. The write runs in a worker
thread; writes are serialised, and a caller whose change is already covered by a write that
started after it does not write again, so a burst of ACKs costs a few writes, not one each.

A file that does not decode is moved aside to `NAME.corrupt-<timestamp>` (never deleted) and
the server starts with no leases.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from netboot import atomic

log = logging.getLogger("netboot.dhcp.leases")

FORMAT = "netboot-leases"
VERSION = 1
TEMP_PREFIX = ".tmp-"


class LeaseFileError(Exception):
    """The lease file cannot be read or written (not: its content is bad)."""


@dataclass
class Lease:
    """An address bound to a client until `expires` (seconds since the epoch).

    An expired lease is kept as a memory of who had the address, so the same client gets
    it back while nobody else needed it (as dnsmasq does)."""

    client: str
    mac: str
    address: str
    expires: float
    hostname: str = ""

    def valid(self, now: float) -> bool:
        return self.expires > now


@dataclass
class Block:
    """An address not to be handed out until `until`: declined, or found in use by a probe."""

    address: str
    until: float
    reason: str


@dataclass
class Offer:
    """An address held for a client between OFFER and REQUEST (memory only)."""

    client: str
    address: str
    until: float


def client_key(client_id: bytes | None, mac: str) -> str:
    """Option 61 if the client sent one, else its MAC (RFC 2131 section 4.2)."""
    if client_id:
        return "id:" + client_id.hex()
    return "mac:" + mac


def _decode(text: str) -> tuple[list[Lease], list[Block]]:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not a netboot lease file")
    if data.get("version") != VERSION:
        raise ValueError(f"unknown version {data.get('version')!r}")
    leases = []
    for item in data["leases"]:
        lease = Lease(
            client=_field(item, "client", str),
            mac=_field(item, "mac", str),
            address=str(IPv4Address(_field(item, "address", str))),
            expires=float(_field(item, "expires", (int, float))),
            hostname=_field(item, "hostname", str),
        )
        leases.append(lease)
    blocks = []
    for item in data["blocked"]:
        blocks.append(
            Block(
                address=str(IPv4Address(_field(item, "address", str))),
                until=float(_field(item, "until", (int, float))),
                reason=_field(item, "reason", str),
            )
        )
    return leases, blocks


def _field(item: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get(name), kind):
        raise ValueError(f"entry without a valid {name!r}: {item!r}")
    if isinstance(item[name], bool):
        raise ValueError(f"entry without a valid {name!r}: {item!r}")
    return item[name]


def _encode(leases: list[Lease], blocks: list[Block]) -> bytes:
    data = {
        "format": FORMAT,
        "version": VERSION,
        "leases": [asdict(lease) for lease in leases],
        "blocked": [asdict(block) for block in blocks],
    }
    return (json.dumps(data, indent=1) + "\n").encode()


def write_atomically(path: Path, payload: bytes) -> None:
    """The lease file's write (kept as a name here so tests can count writes)."""
    atomic.write_atomically(path, payload, prefix=TEMP_PREFIX + path.name + ".")


def read_lease_file(path: Path) -> tuple[list[Lease], list[Block]]:
    """Load the file (blocking). Missing: empty. Undecodable: moved aside, empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(TEMP_PREFIX + path.name + ".*"):
        stale.unlink(missing_ok=True)  # a write interrupted before its rename
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except UnicodeDecodeError as exc:
        return _move_aside(path, f"not UTF-8 ({exc.reason})")
    except OSError as exc:
        raise LeaseFileError(f"cannot read lease file {path}: {exc.strerror}") from None
    try:
        return _decode(text)
    except (ValueError, KeyError, TypeError) as exc:
        return _move_aside(path, str(exc) or type(exc).__name__)


def _move_aside(path: Path, problem: str) -> tuple[list[Lease], list[Block]]:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}.{counter}")
        counter += 1
    try:
        os.replace(path, target)
    except OSError as exc:
        raise LeaseFileError(
            f"lease file {path} is corrupt ({problem}) and cannot be moved aside: {exc.strerror}"
        ) from None
    log.error(
        "lease file %s is corrupt (%s); kept as %s, starting with no leases", path, problem, target
    )
    return [], []


class LeaseStore:
    """Who holds which address, in memory, persisted by `save()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_client: dict[str, Lease] = {}
        self._by_address: dict[str, Lease] = {}
        self._blocks: dict[str, Block] = {}
        self._offers: dict[str, Offer] = {}  # by address
        self._changes = 0
        self._saved = 0
        self._save_lock = asyncio.Lock()

    # --- loading and saving -----------------------------------------------------------

    async def load(self) -> None:
        leases, blocks = await asyncio.to_thread(read_lease_file, self.path)
        for lease in sorted(leases, key=lambda item: item.expires):
            self._put(lease)  # a later lease for the same client or address wins
        self._blocks = {block.address: block for block in blocks}

    async def save(self) -> None:
        """Write the current state unless a write that began after the last change already
        did; raises OSError if the write fails (the caller must then not ACK)."""
        target = self._changes
        async with self._save_lock:
            if self._saved >= target:
                return
            snapshot = self._changes
            now = time.time()  # blocks that have run out are not worth keeping
            self._blocks = {a: b for a, b in self._blocks.items() if b.until > now}
            payload = _encode(list(self._by_address.values()), list(self._blocks.values()))
            await asyncio.to_thread(write_atomically, self.path, payload)
            self._saved = snapshot

    @property
    def dirty(self) -> bool:
        return self._saved < self._changes

    # --- queries ----------------------------------------------------------------------

    def lease_of(self, client: str) -> Lease | None:
        """The client's lease, valid or expired."""
        return self._by_client.get(client)

    def lease_at(self, address: str) -> Lease | None:
        return self._by_address.get(address)

    def offer_of(self, client: str, now: float) -> Offer | None:
        for offer in self._offers.values():
            if offer.client == client and offer.until > now:
                return offer
        return None

    def blocked(self, address: str, now: float) -> Block | None:
        block = self._blocks.get(address)
        return block if block is not None and block.until > now else None

    def holder(self, address: str, now: float) -> str | None:
        """The client that holds the address right now (valid lease or pending offer)."""
        lease = self._by_address.get(address)
        if lease is not None and lease.valid(now):
            return lease.client
        offer = self._offers.get(address)
        if offer is not None and offer.until > now:
            return offer.client
        return None

    def free_for(
        self, client: str, address: str, now: float, *, in_use_by_client: bool = False
    ) -> bool:
        """Nobody else holds it, and it is not blocked, unless the client shows it uses
        the address itself (a renewal from it: the block was about that very machine)."""
        if not in_use_by_client and self.blocked(address, now):
            return False
        holder = self.holder(address, now)
        return holder is None or holder == client

    def never_leased(self, address: str) -> bool:
        return address not in self._by_address

    def expired_since(self, address: str) -> float:
        lease = self._by_address.get(address)
        return lease.expires if lease is not None else 0.0

    def leases(self) -> list[Lease]:
        return sorted(self._by_address.values(), key=lambda lease: IPv4Address(lease.address))

    def blocks(self) -> list[Block]:
        return list(self._blocks.values())

    # --- changes ----------------------------------------------------------------------

    def hold_offer(self, client: str, address: str, until: float) -> None:
        self.drop_offer(client)
        self._offers[address] = Offer(client, address, until)

    def reclaim_offer(
        self,
        client: str,
        now: float,
        held_until_at_most: float,
        within: Callable[[str], bool] = lambda address: True,
    ) -> str | None:
        """Take back the pending offer of another client made longest ago, if it expires by
        `held_until_at_most` (the pool ran dry: an OFFER nobody REQUESTed must not keep a
        real client out, but one made a moment ago may still be answered); its address.
        `within`: only offers of the pool that ran dry (another subnet's frees nothing)."""
        pending = [
            o
            for o in self._offers.values()
            if o.client != client and now < o.until <= held_until_at_most and within(o.address)
        ]
        if not pending:
            return None
        oldest = min(pending, key=lambda offer: offer.until)
        del self._offers[oldest.address]
        return oldest.address

    def drop_offer(self, client: str) -> None:
        for address in [a for a, o in self._offers.items() if o.client == client]:
            del self._offers[address]

    def bind(self, client: str, mac: str, address: str, expires: float, hostname: str) -> Lease:
        self.drop_offer(client)
        self._blocks.pop(address, None)
        lease = Lease(client, mac, address, expires, hostname)
        self._put(lease)
        self._changes += 1
        return lease

    def end(self, client: str, address: str, now: float) -> bool:
        """RELEASE: the lease ends now; the record stays so the client gets it back."""
        lease = self._by_client.get(client)
        if lease is None or lease.address != address or not lease.valid(now):
            return False
        lease.expires = now
        self._changes += 1
        return True

    def block(self, address: str, until: float, reason: str) -> None:
        """Take an address out of use until `until`; a lease on it is forgotten."""
        lease = self._by_address.pop(address, None)
        if lease is not None:
            self._by_client.pop(lease.client, None)
        self._offers.pop(address, None)
        self._blocks[address] = Block(address, until, reason)
        self._changes += 1

    def _put(self, lease: Lease) -> None:
        old = self._by_client.get(lease.client)
        if old is not None and self._by_address.get(old.address) is old:
            del self._by_address[old.address]
        previous = self._by_address.get(lease.address)
        if previous is not None:
            self._by_client.pop(previous.client, None)
        self._by_client[lease.client] = lease
        self._by_address[lease.address] = lease
