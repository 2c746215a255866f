"""The live status page (`/`), its data (`/api/status`, `/events`) and `/metrics`.

The page is one static HTML file with its script and style inline (works offline); it
renders `/api/status` and then every update `/events` pushes (server-sent events: one-way,
reconnects by itself, no extra library on either side). Everything here runs on the HTTP
loop; the services' counters come through `stats` (copied on the main loop, `on_loop`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from netboot import layout
from netboot.boot.menu import BootEntry
from netboot.metrics import CONTENT_TYPE, ServerMetrics
from netboot.records import ClientRecords

PUSH_INTERVAL = 1.0  # seconds between checks for a change to push
KEEPALIVE_EVERY = 15.0  # an SSE comment so proxies keep an idle stream open
MAX_PAGE_CLIENTS = 500  # the most recently seen clients the page gets (the API has them all)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_kind(request: web.Request, file_kind: Callable[[Path], str]) -> str:
    """A bounded label for an HTTP request: its route, or the boot step a file is."""
    path = request.path
    if path == "/boot.ipxe":
        return "script"
    if path.startswith("/clients/"):
        return "settings"
    if path.startswith("/api/"):
        return "api"
    if path in ("/", "/events"):
        return "status"
    if path == "/metrics":
        return "metrics"
    return file_kind(Path(path))


class StatusWeb:
    """Routes and middleware of the status page and metrics, added to the NetbootApp."""

    def __init__(
        self,
        records: ClientRecords,
        metrics: ServerMetrics,
        *,
        root: Path,
        stats: Callable[[], Awaitable[dict[str, Any]]],
        transfers: Callable[[], Awaitable[list[dict[str, Any]]]],
        server_info: Callable[[], dict[str, Any]],
        file_kind: Callable[[Path], str],
        entries: Callable[[], list[BootEntry]] = list,
    ) -> None:
        """`entries()` lists every boot entry (file I/O: called off the loop); the page shows
        those that are not published images (which have their own table)."""
        self.records = records
        self.metrics = metrics
        self.root = root
        self.stats = stats
        self.transfers = transfers
        self.downloads: dict[int, tuple[web.Request, TrackedFileResponse, float]] = {}
        self.server_info = server_info
        self.file_kind = file_kind
        self.entries = entries
        self._closing = asyncio.Event()  # created unbound; used on the HTTP loop only

    def add_routes(self, app: web.Application) -> None:
        """Call before the catch-all file route, which would otherwise take `/`."""
        app.middlewares.append(self.count_requests)
        app.router.add_get("/", self.page)
        app.router.add_get("/api/status", self.api_status)
        app.router.add_get("/events", self.events)
        app.router.add_get("/metrics", self.scrape)
        app.on_shutdown.append(self._on_shutdown)

    @web.middleware
    async def count_requests(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = request_kind(request, self.file_kind)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.metrics.http_requests.labels(kind=kind, status=str(exc.status)).inc()
            raise
        except Exception:
            self.metrics.http_requests.labels(kind=kind, status="500").inc()
            raise
        self.metrics.http_requests.labels(kind=kind, status=str(response.status)).inc()
        return response

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()  # open event streams end, so shutdown need not wait for them

    # --- handlers --------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        html = resources.files("netboot.web").joinpath("static/status.html").read_text()
        return web.Response(
            text=html,
            content_type="text/html",
            headers={
                # nothing external, nothing inline but our own script and style
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; img-src data:",
                "Cache-Control": "no-store",
            },
        )

    async def api_status(self, request: web.Request) -> web.Response:
        return web.json_response(await self.status())

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        last_state, last_write = "", time.monotonic()
        while not self._closing.is_set():
            status = await self.status()
            now = status.pop("now")  # changes every time: compare everything else
            state = json.dumps(status, sort_keys=True)
            try:
                if state != last_state:
                    body = json.dumps({**status, "now": now})
                    await response.write(f"data: {body}\n\n".encode())
                    last_state, last_write = state, time.monotonic()
                elif time.monotonic() - last_write > KEEPALIVE_EVERY:
                    await response.write(b": keepalive\n\n")
                    last_write = time.monotonic()
            except (ConnectionResetError, RuntimeError):
                break  # the page went away
            try:
                await asyncio.wait_for(self._closing.wait(), PUSH_INTERVAL)
            except TimeoutError:
                pass
        return response

    async def scrape(self, request: web.Request) -> web.Response:
        stats = await self.stats()
        clients = self.records.snapshot()
        body = await asyncio.to_thread(self.metrics.exposition, stats, clients)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def file_response(self, path: Path, **kwargs: Any) -> web.FileResponse:
        """The response that sends a served file (listed as under way while it does)."""
        return TrackedFileResponse(self.downloads, path, **kwargs)

    def http_transfers(self) -> list[dict[str, Any]]:
        """HTTP files being sent (read on the HTTP loop, which owns `downloads`)."""
        now = time.monotonic()
        return [
            {
                "protocol": "http",
                "ip": request.remote,
                "file": request.path.lstrip("/"),
                "size": response.content_length,
                "seconds": round(now - started, 3),
            }
            for request, response, started in self.downloads.values()
        ]

    # --- the page's data -------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        stats = await self.stats()
        clients = sorted(self.records.snapshot(), key=lambda c: c["last_seen"], reverse=True)
        images = await asyncio.to_thread(published_images, self.root, clients)
        entries = await asyncio.to_thread(self.entries)
        transfers = [*await self.transfers(), *self.http_transfers()]
        return {
            "now": time.time(),
            "server": self.server_info(),
            "stats": stats,
            "images": images,
            "entries": [entry_row(entry) for entry in entries if entry.source != "image"],
            "clients": clients[:MAX_PAGE_CLIENTS],
            "clients_total": len(clients),
            "transfers": transfers,
        }


def published_images(root: Path, clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The current version of each image, and how many clients booted each image version
    (file I/O: call it off the loop)."""
    running = Counter(
        (c["facts"].get("image"), c["facts"].get("version"))
        for c in clients
        if c["facts"].get("image")
    )
    found = []
    for image in layout.current_images(root):
        versions = {
            version: count for (name, version), count in running.items() if name == image.name
        }
        found.append(
            {
                "name": image.name,
                "version": image.version,
                "bootable": image.bootable,
                "size": image.manifest.get("size"),
                "created": image.manifest.get("created"),
                "clients": versions.get(image.version, 0),
                "clients_by_version": versions,
            }
        )
    return found


def entry_row(entry: BootEntry) -> dict[str, Any]:
    """A boot entry as the page lists it: what it is and what it loads first."""
    return {
        "name": entry.name,
        "title": entry.label,
        "kind": entry.kind,
        "source": entry.source,
        "boots": entry.kernel,
    }


class TrackedFileResponse(web.FileResponse):
    """A FileResponse that is listed in `active` while aiohttp sends it (its `prepare`
    sends the whole file)."""

    def __init__(self, active: dict, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._active = active

    async def prepare(self, request: web.BaseRequest) -> Any:
        self._active[id(self)] = (request, self, time.monotonic())
        try:
            return await super().prepare(request)
        finally:
            self._active.pop(id(self), None)
