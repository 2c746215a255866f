"""HTTP: the iPXE boot script, client settings, client records and the served files.

Scripts are rendered in memory; files go out through aiohttp's FileResponse (sendfile,
Range, ETag, HEAD). `HttpServer` serves the app on the running loop; `HttpServerThread`
serves it from a thread and loop of its own, which is what `netboot serve` does: measured
with 16 parallel downloads, aiohttp on the main loop let DHCP answers wait hundreds of
milliseconds (docs/performance.md). The HTTP loop touches nothing the main loop owns
without a guard: client records are locked, and stats are copied on the main loop
(`on_loop`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shlex
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from netboot import layout
from netboot.api_files import ApiFileProxy
from netboot.boot import BootPolicy, ipxe
from netboot.boot.api import FILE_PATH
from netboot.boot.facts import facts_from_query
from netboot.boot.menu import MEMDISK_PATH
from netboot.config import Config
from netboot.http_guard import CappedListener, protocol_logger, quiet_resource_errors
from netboot.multicast import SAFE_NAME, Offer, shell_answer
from netboot.paths import UnsafePath, confine
from netboot.ratelimit import RateLimitedLog
from netboot.records import ClientRecords, normalize_mac
from netboot.web.status import StatusWeb

log = logging.getLogger("netboot.http")
T = TypeVar("T")

SCRIPT_TYPE = "text/plain; charset=utf-8"
FILE_CHUNK = 256 * 1024
CLIENTS_PAGE, CLIENTS_PAGE_MAX = 100, 1000  # /api/clients records per page: default, most
# a requested file's name -> the boot step it is, for the client record
FILE_KINDS = {
    layout.KERNEL: "kernel",
    layout.INITRD: "initrd",
    layout.STANDALONE_INITRD: "initrd",
    layout.ADDON_INITRD: "addon",
    "ltsp.img": "addon",
    layout.SQUASHFS: "image",
}


def file_kind(path: Path) -> str:
    if path.name in FILE_KINDS:
        return FILE_KINDS[path.name]
    if path.parent.name == layout.IPXE_DIR:
        return "ipxe-binary"
    if path.suffix == ".img" and path.parent.name == "images":
        return "image"
    return "file"


def shell_fragment(settings: dict[str, Any]) -> str:
    """Client settings as `NETBOOT_KEY='value'` lines a busybox shell can source safely."""
    lines = ["# netboot client settings"]
    for key in sorted(settings):
        value = settings[key]
        if value in ("", None):
            continue
        lines.append(f"NETBOOT_{key.upper()}={shlex.quote(str(value))}")
    return "\n".join(lines) + "\n"


def is_served_file(path: Path) -> bool:
    """A regular file we can serve; a name the kernel refuses (ENAMETOOLONG, EINVAL) or
    cannot reach is simply not there (404), never a 500."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


async def _no_stats() -> dict[str, Any]:
    return {}


class NetbootApp:
    """The aiohttp handlers; `policy` answers what a client boots (None until the server
    knows its HTTP port)."""

    def __init__(
        self,
        config: Config,
        records: ClientRecords,
        *,
        policy: Callable[[], BootPolicy | None],
        stats: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        status_web: StatusWeb | None = None,
        multicast: Offer | None = None,
    ) -> None:
        self.config = config
        self.records = records
        self.policy = policy
        self.stats = stats or _no_stats
        self.status_web = status_web
        self.multicast = multicast
        self.api_files = ApiFileProxy(lambda name: self._policy().api_file(name), records)

    def build(self) -> web.Application:
        app = web.Application()
        if self.status_web is not None:
            self.status_web.add_routes(app)
        app.router.add_get("/boot.ipxe", self.boot_script)
        app.router.add_get("/clients/{mac}", self.client_settings)
        app.router.add_get("/api/clients", self.api_clients)
        app.router.add_get("/api/clients/{mac}", self.api_client)
        app.router.add_get("/api/stats", self.api_stats)
        app.router.add_get("/multicast/{image}/{version}", self.multicast_session)
        app.router.add_get(FILE_PATH, self.api_files.handle)
        app.router.add_get(MEMDISK_PATH, self.memdisk)
        app.router.add_route("GET", "/{path:.*}", self.static)
        app.router.add_route("HEAD", "/{path:.*}", self.static)
        return app

    # --- scripts -----------------------------------------------------------------------------

    def _policy(self) -> BootPolicy:
        policy = self.policy()
        if policy is None:
            raise web.HTTPServiceUnavailable(text="starting\n")
        return policy

    async def boot_script(self, request: web.Request) -> web.Response:
        policy = self._policy()
        query = request.query
        ip = request.remote or ""
        if not query.get("mac"):
            return web.Response(
                text=ipxe.chain_script(policy.script_url), content_type="text/plain"
            )
        try:
            client = facts_from_query(query)
        except ValueError:
            raise web.HTTPBadRequest(text="bad mac parameter\n") from None
        self.records.learn(client.mac, ip)
        if policy.needs_api(client):
            await policy.ask_api(client)
        # listing the served root is file I/O: keep it off this loop's thread
        menu = await asyncio.to_thread(policy.menu, client)
        script = ipxe.menu_script(menu, self.config.ipxe.script)
        self.records.event(
            client.mac,
            "script",
            ip=ip,
            platform=client.platform,
            buildarch=client.buildarch,
            images=len(menu.entries),
            manufacturer=client.manufacturer,
            product=client.product,
            serial=client.serial,
        )
        return web.Response(text=script, content_type="text/plain")

    async def client_settings(self, request: web.Request) -> web.Response:
        try:
            mac = normalize_mac(request.match_info["mac"])
        except ValueError:
            raise web.HTTPBadRequest(text="bad MAC address\n") from None
        settings = self._policy().client_settings(mac)
        self.records.event(mac, "settings", ip=request.remote)
        return web.Response(text=shell_fragment(settings), content_type="text/plain")

    async def multicast_session(self, request: web.Request) -> web.Response:
        """A udpcast session to join (`NB_MC_PORTBASE=...`) or why not (`NB_MC_REASON=`)."""
        if self.multicast is None:
            answer = {"reason": "multicast is not enabled on this server"}
        else:
            answer = await self.multicast(
                request.match_info["image"], request.match_info["version"], request.remote or ""
            )
        image = request.match_info["image"]
        self.records.event(
            None,
            "multicast",
            ip=request.remote,
            image=image if SAFE_NAME.match(image) else "(invalid)",
            **answer,
        )
        return web.Response(text=shell_answer(answer), content_type="text/plain")

    # --- records -------------------------------------------------------------------------------

    async def api_clients(self, request: web.Request) -> web.Response:
        """One page of records: `?offset=&limit=` (limit at most CLIENTS_PAGE_MAX);
        `X-Total-Count` says how many there are."""
        try:
            offset = max(int(request.query.get("offset", 0)), 0)
            limit = min(max(int(request.query.get("limit", CLIENTS_PAGE)), 0), CLIENTS_PAGE_MAX)
        except ValueError:
            raise web.HTTPBadRequest(text="offset and limit are numbers\n") from None
        page = self.records.snapshot(offset, limit)
        total = {"X-Total-Count": str(len(self.records))}
        return web.json_response(page, headers=total)

    async def api_client(self, request: web.Request) -> web.Response:
        try:
            record = self.records.as_dict(request.match_info["mac"])
        except ValueError:
            raise web.HTTPBadRequest(text="bad MAC address\n") from None
        if record is None:
            raise web.HTTPNotFound(text="no record of that client\n")
        return web.json_response(record)

    async def api_stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self.stats())

    # --- files ---------------------------------------------------------------------------------

    def _resolve(self, url_path: str) -> Path:
        """Map a URL path to a file: /ltsp/ is the LTSP TFTP tree in compat mode, /ipxe/ the
        TFTP root's binaries, everything else the served root."""
        server = self.config.server
        if server.ltsp_compat and url_path.startswith("ltsp/"):
            return confine(Path(server.ltsp_tftp_root), url_path.removeprefix("ltsp/"))
        if url_path.startswith(layout.IPXE_DIR + "/") and self.config.tftp_root != self.config.root:
            return confine(self.config.tftp_root, url_path)
        return confine(self.config.root, url_path)

    async def memdisk(self, request: web.Request) -> web.StreamResponse:
        """syslinux's memdisk, which boots `iso_method = "memdisk"` entries (BIOS)."""
        path = Path(self.config.boot.memdisk)
        if not await asyncio.to_thread(is_served_file, path):
            raise web.HTTPNotFound(text="memdisk is not installed (Debian: syslinux-common)\n")
        self.records.event(None, "kernel", ip=request.remote, file="memdisk")
        return self._file_response(path)

    async def static(self, request: web.Request) -> web.StreamResponse:
        # match_info is already percent-decoded; confine() refuses '..', NUL and escapes
        raw = request.match_info["path"]
        try:
            path = self._resolve(raw)
        except UnsafePath as exc:
            self.records.event(None, "http-refused", ip=request.remote, path=raw, reason=str(exc))
            raise web.HTTPForbidden(text="forbidden\n") from None
        if not await asyncio.to_thread(is_served_file, path):
            raise web.HTTPNotFound(text="not found\n")
        if request.method == "GET":
            self.records.event(
                None,
                file_kind(path),
                ip=request.remote,
                file=raw,
                range=request.headers.get("Range"),
                **layout.image_of_url(raw),
            )
        return self._file_response(path)

    def _file_response(self, path: Path) -> web.FileResponse:
        """A served file; the status page lists it while it is being sent."""
        if self.status_web is not None:
            return self.status_web.file_response(path, chunk_size=FILE_CHUNK)
        return web.FileResponse(path, chunk_size=FILE_CHUNK)


class HttpServer:
    """The aiohttp app served on the running loop: bind the first free port of a list.

    Hostile clients are bounded (netboot/http_guard.py): connections beyond `max_connections`
    are reset, one idle or sending its request head for longer than `idle_timeout` is
    closed, and malformed requests are counted rather than logged with a traceback. Port 0
    picks a free port, which tests use."""

    def __init__(
        self,
        app_factory: Callable[[], web.Application],
        *,
        idle_timeout: float = 15,
        max_connections: int = 1000,
    ) -> None:
        self.app_factory = app_factory
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.port = 0
        self.stats: Counter[str] = Counter()
        self._limiter = RateLimitedLog(log, interval=10.0)
        self._runner: web.AppRunner | None = None
        self._listener: CappedListener | None = None

    async def start(self, host: str, ports: list[int]) -> int:
        """Bind the first free port of `ports`; return it. Raises OSError if none is free."""
        quiet_resource_errors(asyncio.get_running_loop(), self.stats, self._limiter)
        runner = web.AppRunner(
            self.app_factory(),
            access_log=None,
            handle_signals=False,
            logger=protocol_logger(self.stats, self._limiter),
            # the keep-alive timer also runs from accept() until a request head is complete,
            # so it bounds idle connections and slow request heads alike
            keepalive_timeout=self.idle_timeout,
            handler_cancellation=True,
            max_line_size=8190,
            max_field_size=8190,
            max_headers=64,
        )
        await runner.setup()
        self._runner = runner
        assert runner.server is not None
        last: OSError | None = None
        cap = self.max_connections
        for port in ports:
            listener = CappedListener(runner.server, cap, self.stats, self._limiter)
            try:
                self.port = await listener.start(host, port)
            except OSError as exc:
                last = exc
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    log.warning("HTTP port %d unavailable (%s)", port, exc.strerror)
                    continue
                await self.close()
                raise
            self._listener = listener
            return self.port
        await self.close()
        raise last or OSError("no HTTP port to try")

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class HttpServerThread:
    """The same server on a thread and event loop of its own (see `server.http_layout`).

    Start and stop are awaited from the main loop; everything aiohttp does happens on the
    HTTP loop. Handlers that need state the main loop owns get it through `on_loop`."""

    def __init__(self, app_factory: Callable[[], web.Application], **limits: Any) -> None:
        self._server = HttpServer(app_factory, **limits)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def stats(self) -> Counter[str]:
        return self._server.stats

    async def start(self, host: str, ports: list[int]) -> int:
        # the stock loop, not uvloop: uvloop has no loop.sendfile, and aiohttp would then
        # copy every file through Python instead of the kernel's zero-copy sendfile
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="netboot-http", daemon=True)
        self._thread.start()
        try:
            starting = asyncio.run_coroutine_threadsafe(self._server.start(host, ports), loop)
            return await asyncio.wrap_future(starting)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if thread.is_alive():
            closing = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                await asyncio.wait_for(asyncio.wrap_future(closing), timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                await asyncio.to_thread(thread.join, 10)
        if not thread.is_alive():
            loop.close()

    async def _shutdown(self) -> None:
        """On the HTTP loop: close the server, then the executor its file checks used."""
        await self._server.close()
        await asyncio.get_running_loop().shutdown_default_executor()


def on_loop(loop: asyncio.AbstractEventLoop, read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`read` as a coroutine function that runs it on `loop`, whichever loop awaits it.

    The main loop's Counters and dicts are changed by its callbacks without locks; a reader
    on another thread could see one mid-change ("dictionary changed size during
    iteration"). Running the read on the owning loop makes the copy atomic."""

    async def run_there() -> T:
        return read()

    async def call() -> T:
        if asyncio.get_running_loop() is loop:
            return read()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run_there(), loop))

    return call
