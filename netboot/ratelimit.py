"""One rate-limited log line per reason: bad input must never flood the log.

A hostile or broken client can send thousands of bad packets a second; each is counted (the
transport's stats, per reason) and at most one line per `interval` seconds reaches the log
for that reason, saying how many were suppressed since the last one. Client-supplied text in
those lines goes through `netboot.untrusted.for_log` first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_INTERVAL = 60.0
MAX_KEYS = 256  # reasons are a handful; the bound only guards against a key built from input


class RateLimitedLog:
    """`log(key, level, msg, *args)`: emit if `key` has been quiet for `interval` seconds,
    else count it silently. Returns whether the line was written. `exc_info` is for bugs in
    our own code (a handler that raised): its traceback once a minute, not per packet."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> int | None:
        """None while `key` has been logged within `interval` (the event is only counted);
        else how many were suppressed since its last line. For callers that write or rewrite
        the line themselves (a logging filter); thread-safe, HTTP runs on its own thread."""
        with self._lock:
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            self._last.move_to_end(key)
            while len(self._last) > MAX_KEYS:
                old, _ = self._last.popitem(last=False)
                self._suppressed.pop(old, None)
            return self._suppressed.pop(key, 0)

    def __call__(
        self, key: str, level: int, msg: str, *args: object, exc_info: bool = False
    ) -> bool:
        suppressed = self.allow(key)
        if suppressed is None:
            return False
        if suppressed:
            msg += " (%d more like this suppressed in the last %.0f s)"
            args = (*args, suppressed, self.interval)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True


class LineBudget:
    """At most `per_second` lines a second for a kind of line that is normal one at a time
    but comes in floods (a client's boot steps: a room powering on, or a DISCOVER flood).
    Lines over the budget are counted, not written; the first line allowed after them says
    how many were left out and since when. Writing a log line costs more than answering a
    DHCP packet from a template, so an unbounded log would set the storm's pace (and fill
    the disk, or meet journald's own rate limit, which drops lines without a count)."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self._second = -1
        self._used = 0
        self._skipped = 0
        self._skipped_since = 0.0  # time.time() of the first line left out
        self._lock = threading.Lock()

    def take(self) -> tuple[int, float] | None:
        """None: over the budget, leave the line out. Else (lines left out before this one,
        the wall-clock time the first of them was left out; 0 and 0.0 when none were)."""
        second = int(self.clock())
        with self._lock:
            if second != self._second:
                self._second, self._used = second, 0
            if self._used >= self.per_second:
                if not self._skipped:
                    self._skipped_since = time.time()
                self._skipped += 1
                return None
            self._used += 1
            skipped, since = self._skipped, self._skipped_since
            self._skipped = 0
            return skipped, since


_limiters: dict[str, RateLimitedLog] = {}


def limited(logger: logging.Logger) -> RateLimitedLog:
    """The one shared RateLimitedLog of `logger` (so every caller's lines share its clock)."""
    limiter = _limiters.get(logger.name)
    if limiter is None:
        limiter = _limiters[logger.name] = RateLimitedLog(logger)
    return limiter
