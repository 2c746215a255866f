"""Per-client ordering for the full server: one client's requests are decided one at a time.

A DISCOVER may wait for an ARP probe and a REQUEST for the lease write; a client that
retransmits meanwhile must not have its second packet decided against half-changed state,
while other clients go on being answered. So each client key gets a lock of its own, kept
only while somebody holds or waits for it (a LAN of thousands of clients costs nothing
between their requests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class _Entry:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ClientLocks:
    """`async with locks.hold(key):` runs the body after every earlier holder of `key`."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
