"""Which published versions clients still use, shared from `netboot serve` to the builder.

`netboot image` and `netboot kernel` run in another process than `netboot serve`, and a
client that booted a version over NFS in place reads its files for as long as it runs
(LTSP issue 928: a pruned version is a stale NFS handle). The server knows from its client
records which image version each client fetched and when it was last seen; it writes that
to ROOT/images/NAME/.in-use (JSON: version -> last seen, atomically), and `publish.prune`
keeps every version listed there with a recent last-seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from netboot import layout
from netboot.atomic import write_atomically

log = logging.getLogger("netboot.in_use")

IN_USE_FILE = ".in-use"
WRITE_INTERVAL = 30.0  # seconds between two writes at most (records change per request)
CHECK_INTERVAL = 1.0  # how soon a first change is written
DAY = 86400.0

Usage = dict[str, dict[str, float]]  # image -> version -> last seen (epoch seconds)


def read_in_use(image_dir: Path) -> dict[str, float]:
    """The .in-use file of one image; empty when missing or unreadable."""
    try:
        data = json.loads((image_dir / IN_USE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(v): float(t) for v, t in data.items() if isinstance(t, int | float)}


def recently_used(image_dir: Path, days: float, now: float | None = None) -> set[str]:
    """Versions of the image a client was seen with in the last `days` days."""
    if days <= 0:
        return set()
    cutoff = (now if now is not None else time.time()) - days * DAY
    return {v for v, seen in read_in_use(image_dir).items() if seen >= cutoff}


def write_usage(root: Path, usage: Usage) -> list[str]:
    """Merge `usage` into each image's .in-use (the later last-seen wins; versions no
    longer published are dropped); returns the images whose file changed. Blocking."""
    changed = []
    for name, versions in sorted(usage.items()):
        image_dir = layout.image_dir(root, name)
        merged = read_in_use(image_dir)
        before = dict(merged)
        for version, seen in versions.items():
            merged[version] = max(seen, merged.get(version, 0.0))
        merged = {v: t for v, t in merged.items() if (image_dir / layout.VERSIONS / v).is_dir()}
        if merged == before or not image_dir.is_dir():
            continue
        data = json.dumps(merged, indent=1, sort_keys=True).encode() + b"\n"
        write_atomically(image_dir / IN_USE_FILE, data)
        changed.append(name)
    return changed


class InUsePublisher:
    """Writes the versions in use from the client records: a change is written within
    about a second, then at most once per `interval` (records change on every request)."""

    def __init__(
        self, root: Path, usage: Callable[[], Usage], interval: float = WRITE_INTERVAL
    ) -> None:
        self.root = root
        self.usage = usage
        self.interval = interval
        self._written: Usage = {}
        self._last_write = -interval

    async def publish_once(self) -> bool:
        """Write if the usage changed; True if it did."""
        usage = self.usage()
        if usage == self._written:
            return False
        try:
            await asyncio.to_thread(write_usage, self.root, usage)
        except OSError as exc:
            log.warning("cannot record the versions in use under %s: %s", self.root, exc)
        self._written = usage
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            if loop.time() - self._last_write >= self.interval and await self.publish_once():
                self._last_write = loop.time()
