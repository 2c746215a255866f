"""HTTP against hostile clients: connection cap, open-file limit, quiet bad-request logging.

aiohttp logs every malformed request (bad request line, bad header bytes) with a traceback
through the logger its `RequestHandler` is given; an idle or half-sent connection keeps an
fd until `keepalive_timeout`. Here: the logger aiohttp gets counts malformed requests and
lets at most one line per interval through (no traceback); a listener whose protocol
factory refuses connections beyond a cap sized below the open-file limit; and a loop
exception handler that turns asyncio's per-accept "out of system resource" into a count.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from netboot.ratelimit import RateLimitedLog
from netboot.untrusted import for_log

log = logging.getLogger("netboot.http")

# fds kept free for TFTP transfers, served files, leases and the log when HTTP is at its cap
FD_RESERVE = 256
MIN_CONNECTIONS = 16


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d: %s", soft, exc)
    return soft


def connection_cap(fd_limit: int, configured: int = 0) -> int:
    """The HTTP connection cap: `configured` if set, else the fd limit minus a reserve;
    never more than the fd limit leaves room for."""
    room = max(MIN_CONNECTIONS, fd_limit - FD_RESERVE)
    return min(configured, room) if configured > 0 else room


class BadRequestFilter(logging.Filter):
    """On the logger aiohttp's protocol uses: a malformed request (an HttpProcessingError)
    becomes a count and, at most once per interval, one line without a traceback. Anything
    else (a bug in a handler) keeps its traceback."""

    def __init__(self, stats: Counter[str], limiter: RateLimitedLog) -> None:
        super().__init__()
        self.stats = stats
        self.limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return record.levelno >= logging.INFO  # aiohttp's debug chatter stays out
        reason = type(exc).__name__
        self.stats[f"http-malformed-{reason}"] += 1
        missed = self.limiter.allow("malformed")
        if missed is None:
            return False
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "dropped malformed HTTP request from %s: %s (%d more not logged)"
        record.args = (for_log(remote), for_log(exc.message, 120), missed)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def protocol_logger(stats: Counter[str], limiter: RateLimitedLog) -> logging.Logger:
    """The logger handed to aiohttp's RequestHandler (`AppRunner(logger=...)`)."""
    logger = logging.getLogger("netboot.http.protocol")
    for old in list(logger.filters):
        logger.removeFilter(old)
    logger.addFilter(BadRequestFilter(stats, limiter))
    return logger


class _Refused(asyncio.Protocol):
    """A connection beyond the cap: reset at once, so its fd is free again."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class CappedListener:
    """aiohttp's `Server` on a listening socket, refusing connections beyond `cap`."""

    def __init__(
        self, server: web.Server, cap: int, stats: Counter[str], limiter: RateLimitedLog
    ) -> None:
        self.server = server
        self.cap = cap
        self.stats = stats
        self.limiter = limiter
        self._listener: asyncio.base_events.Server | None = None

    def _protocol(self) -> asyncio.BaseProtocol:
        if len(self.server.connections) >= self.cap:
            self.stats["http-refused-cap"] += 1
            missed = self.limiter.allow("cap")
            if missed is not None:
                log.warning(
                    "HTTP at its cap of %d connections: refusing new ones (%d more refused "
                    "since the last line)",
                    self.cap,
                    missed,
                )
            return _Refused()
        return self.server()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._protocol, host, port, reuse_address=True, backlog=128
        )
        return int(self._listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
            self._listener = None


def quiet_resource_errors(
    loop: asyncio.AbstractEventLoop, stats: Counter[str], limiter: RateLimitedLog
) -> None:
    """asyncio reports every failed accept() (EMFILE) through the loop's exception handler,
    once per retry: count those and log one line per interval; the rest as before."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and "accept" in str(context.get("message", "")):
            stats["accept-failed"] += 1
            missed = limiter.allow("accept")
            if missed is not None:
                log.warning("accept() failed: %s (%d more not logged)", exc.strerror, missed)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
