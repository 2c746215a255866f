"""HTTP: the boot API's files, streamed to clients through netboot (`/_/file?name=`).

In API mode with `boot.api_proxy` a client fetches every file the API named through a
sealed name (`netboot/boot/sealed.py`); the policy opens it to the URL the API gave, or
refuses it (403: a forged, altered or stale name; netboot is no open proxy). The file is
streamed chunk by chunk with backpressure both ways, so memory stays bounded whatever its
size; an upstream failure (unreachable, a timeout, a status other than 200, over MAX_FILE)
is a 502 and one rate-limited log line, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from netboot.ratelimit import RateLimitedLog
from netboot.records import ClientRecords
from netboot.untrusted import for_log

log = logging.getLogger("netboot.http.api_files")

CHUNK = 256 * 1024  # bytes read from upstream and written to the client at a time
MAX_FILE = 8 * 1024**3  # bytes: a kernel or initrd larger than this is not one
CONNECT_TIMEOUT = 10.0  # seconds to reach the upstream server
READ_TIMEOUT = 60.0  # seconds upstream may stay silent mid-file


class UpstreamError(Exception):
    """The upstream file cannot be delivered (the message is one log line)."""


def shown(url: str) -> str:
    """A URL for the log without its query or credentials (a presigned URL's secret)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class ApiFileProxy:
    """The `/_/file` handler; `open_name(name)` is the policy's URL for a name, or None."""

    def __init__(self, open_name: Callable[[str], str | None], records: ClientRecords) -> None:
        self.open_name = open_name
        self.records = records
        self._limiter = RateLimitedLog(log, interval=10.0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("name", "")
        if not name:
            raise web.HTTPBadRequest(text="missing file name\n")
        url = self.open_name(name)
        if url is None:
            self.records.event(None, "http-refused", ip=request.remote, path="/_/file",
                               reason="not a file name of this server")  # fmt: skip
            raise web.HTTPForbidden(text="forbidden\n")
        self.records.event(None, "api-file", ip=request.remote, file=shown(url))
        started: list[web.StreamResponse] = []  # the response, once its head is sent
        try:
            return await self._stream(request, url, started)
        except UpstreamError as exc:
            self._limiter(f"upstream {shown(url)}", logging.WARNING, "boot API file %s: %s",
                          for_log(shown(url)), exc)  # fmt: skip
            if started:
                # the status line is gone: cut the connection, the client sees a short file
                if request.transport is not None:
                    request.transport.close()
                return started[0]
            raise web.HTTPBadGateway(text="upstream file unavailable\n") from None

    async def _stream(
        self, request: web.Request, url: str, started: list[web.StreamResponse]
    ) -> web.StreamResponse:
        timeout = aiohttp.ClientTimeout(connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
                headers = {"Accept-Encoding": "identity"}
                async with session.get(url, headers=headers) as upstream:
                    if upstream.status != 200:
                        raise UpstreamError(f"upstream answered {upstream.status}")
                    size = upstream.content_length
                    if size is not None and size > MAX_FILE:
                        raise UpstreamError(f"upstream file of {size} bytes is over {MAX_FILE}")
                    response = web.StreamResponse()
                    response.content_type = "application/octet-stream"
                    if size is not None:
                        response.content_length = size
                    await response.prepare(request)
                    started.append(response)
                    sent = 0
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        sent += len(chunk)
                        if sent > MAX_FILE:
                            raise UpstreamError(f"upstream file is over {MAX_FILE} bytes")
                        await response.write(chunk)
                    if size is not None and sent != size:
                        raise UpstreamError(f"upstream sent {sent} of {size} bytes")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if isinstance(exc, ConnectionResetError) and started:
                return started[0]  # the client went away
            raise UpstreamError(str(exc) or type(exc).__name__) from None
        await response.write_eof()
        return response
