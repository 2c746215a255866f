"""Log lines hostile input cannot forge or flood: escaped values, rate-limited lines."""

from __future__ import annotations

import threading
import time
from collections import Counter

LOG_INTERVAL = 10.0  # seconds between two lines about the same kind of dropped input


def escape(value: object, limit: int = 200) -> str:
    """A client-supplied value as one printable log token: control bytes escaped, cut."""
    text = value if isinstance(value, str) else str(value)
    cleaned = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


class RateLimitedLine:
    """At most one log line per `interval` for one kind of event, with the count between."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._missed: Counter[str] = Counter()

    def allow(self, kind: str) -> int | None:
        """None to stay quiet; else how many events went unlogged since the last line."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -self.interval) < self.interval:
                self._missed[kind] += 1
                return None
            self._last[kind] = now
            return self._missed.pop(kind, 0)
