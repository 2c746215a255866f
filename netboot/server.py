"""`netboot serve`: start the transports, wait for a signal, stop them cleanly.

Order matters: HTTP binds first because the port it gets (80, or the fallback) goes into
every URL the DHCP answers and scripts hand out.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from netboot import eventloop, layout, reload, sdnotify
from netboot.boot import BootPolicy, grub
from netboot.config import Config, ConfigError
from netboot.dhcp.proxy import ProxyDhcpServer
from netboot.errors import UserError
from netboot.http import HttpServer, HttpServerThread, NetbootApp, file_kind, on_loop
from netboot.http_guard import connection_cap, quiet_resource_errors, raise_fd_limit
from netboot.in_use import InUsePublisher
from netboot.metrics import ServerMetrics
from netboot.multicast import MulticastSessions, on_owner_loop
from netboot.netinfo import InterfaceInfo
from netboot.ratelimit import RateLimitedLog
from netboot.records import ClientRecords
from netboot.web.status import StatusWeb

log = logging.getLogger("netboot.server")

HTTP_LAYOUT_ENV = "NETBOOT_HTTP_LAYOUT"
DEFAULT_HTTP_LAYOUT = "thread"
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi", "ipxe.pxe", "undionly.kkpxe")


def interface_mtu(name: str) -> int:
    """The interface's MTU from sysfs (1500 when unknown)."""
    try:
        return int(Path(f"/sys/class/net/{name}/mtu").read_text())
    except (OSError, ValueError):
        return 1500


def http_layout() -> str:
    """Where aiohttp runs: "loop" (the main loop, with DHCP and TFTP) or "thread" (a loop
    of its own). Measured in docs/performance.md; `NETBOOT_HTTP_LAYOUT` is there so the
    bench can run both layouts side by side, not a setting for users."""
    value = os.environ.get(HTTP_LAYOUT_ENV, DEFAULT_HTTP_LAYOUT)
    return value if value in ("loop", "thread") else DEFAULT_HTTP_LAYOUT


class StartupError(UserError):
    """A reason the server cannot start; str() is the one line shown to the user."""


class Service(Protocol):
    stats: Counter[str]

    async def close(self) -> None: ...


def prepare_root(config: Config) -> list[str]:
    """Create the served root and place the iPXE binaries in it (and, with the GRUB loader
    anywhere in the config, signed shim and GRUB); returns what was copied.

    A binary is copied again only when its size or mtime differ, so a restart is cheap and an
    admin's own build placed under another name is never touched.
    """
    root = config.root
    (root / layout.IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    target_dir = config.tftp_root / layout.IPXE_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    source_dir = Path(config.ipxe.binaries_dir)
    copied = _place_shim_chains(config) if grub.uses_grub(config) else []
    if not source_dir.is_dir():
        log.warning(
            "no iPXE binaries in %s (install the 'ipxe' package): only clients that "
            "already run iPXE can boot",
            source_dir,
        )
        return copied
    for name in IPXE_BINARIES:
        if _copy_changed(source_dir / name, target_dir / name):
            copied.append(name)
    return copied


def _place_shim_chains(config: Config) -> list[str]:
    """Signed shim and GRUB of each CPU, where shim looks for GRUB (`netboot.boot.grub`).
    A CPU whose files are not installed is skipped with a warning (arm64 on an amd64 host)."""
    copied = []
    for chain in dict.fromkeys(grub.CHAINS.values()):
        sources = [Path(getattr(config.grub, key)) for key in (chain.shim_key, chain.grub_key)]
        missing = [str(p) for p in sources if not p.is_file()]
        if missing:
            log.warning("loader grub: %s not found: no %s for those clients", ", ".join(missing),
                        chain.directory)  # fmt: skip
            continue
        (config.tftp_root / chain.directory).mkdir(parents=True, exist_ok=True)
        for source, name in zip(sources, (chain.shim_path, chain.grub_path), strict=True):
            if _copy_changed(source, config.tftp_root / name):
                copied.append(name)
    return copied


def _copy_changed(source: Path, target: Path) -> bool:
    """Copy `source` to `target` atomically unless the size and mtime already match."""
    if not source.is_file():
        return False
    src = source.stat()
    if target.exists():
        dst = target.stat()
        if dst.st_size == src.st_size and int(dst.st_mtime) == int(src.st_mtime):
            return False
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copy2(source, tmp)
    tmp.replace(target)
    return True


class NetbootServer:
    """All transports of one `netboot serve` process."""

    def __init__(self, config: Config, interface: InterfaceInfo, server_ip: str) -> None:
        self.config = config
        self.interface = interface
        self.server_ip = server_ip
        self.metrics = ServerMetrics()
        self.records = ClientRecords(
            on_event=self.metrics.boot_timer,
            max_clients=config.server.max_clients,
            idle_seconds=config.server.client_idle_seconds,
            log_lines=config.server.client_log_lines,
        )
        self.started = time.time()
        self.http: HttpServer | HttpServerThread | None = None
        self.app: NetbootApp | None = None
        self.policy: BootPolicy | None = None
        self.services: dict[str, Service] = {}
        self.main_stats: Counter[str] = Counter()
        self._in_use_task: asyncio.Task[None] | None = None
        self.multicast = MulticastSessions(config, interface.name)

    def stats(self) -> dict[str, Any]:
        """A copy of every service's counters; call it on the main loop, which owns them.
        HTTP's counters change on its own thread: dict() copies them in one step."""
        stats = {name: dict(service.stats) for name, service in self.services.items()}
        if self.http is not None:
            stats["http"] = dict(self.http.stats)
        stats["server"] = dict(self.main_stats)
        stats["multicast"] = dict(self.multicast.stats)
        return stats

    def transfers(self) -> list[dict[str, Any]]:
        """The TFTP transfers under way; call it on the main loop, which owns them."""
        progress = getattr(self.services.get("tftp"), "progress", None)
        return progress() if progress is not None else []

    def info(self) -> dict[str, Any]:
        """What the status page shows of the server itself (values fixed once started)."""
        server = self.config.server
        return {
            "address": self.server_ip,
            "interface": self.interface.name,
            "dhcp": server.dhcp,
            "ports": {
                "http": self.http.port if self.http is not None else None,
                "tftp": server.tftp_port or None,
                "dhcp": server.dhcp_port if server.dhcp != "off" else None,
                "proxy": server.proxy_port if server.dhcp != "off" else None,
            },
            "started": self.started,
        }

    async def _start_http(self) -> int:
        server = self.config.server
        loop = asyncio.get_running_loop()
        stats = on_loop(loop, self.stats)
        status_web = StatusWeb(
            self.records,
            self.metrics,
            root=self.config.root,
            stats=stats,
            transfers=on_loop(loop, self.transfers),
            server_info=self.info,
            file_kind=file_kind,
            entries=lambda: self.policy.entries(),  # the policy is replaced whole on reload
        )
        app = NetbootApp(
            self.config,
            self.records,
            # set when the port is known, replaced whole on reload: safe to read from HTTP's thread
            policy=lambda: self.policy,
            stats=stats,
            status_web=status_web,
            multicast=on_owner_loop(loop, self.multicast.offer),
        )
        self.app = app
        ports = [server.http_port]
        if server.http_port != 0 and server.http_fallback_port not in ports:
            ports.append(server.http_fallback_port)
        layout_name = http_layout()
        kind = HttpServerThread if layout_name == "thread" else HttpServer
        fd_limit = raise_fd_limit()
        cap = connection_cap(fd_limit, server.http_max_connections)
        log.debug("open-file limit %d: at most %d HTTP connections", fd_limit, cap)
        self.http = kind(app.build, idle_timeout=server.http_idle_timeout, max_connections=cap)
        try:
            port = await self.http.start("0.0.0.0", ports)
        except OSError as exc:
            self.http = None
            tried = ", ".join(str(p) for p in ports)
            raise StartupError(
                f"cannot listen on HTTP port {tried}: {exc.strerror or exc}"
            ) from None
        log.debug("HTTP on port %d, layout %s", port, layout_name)
        if port != server.http_port and server.http_port != 0:
            log.warning(
                "HTTP port %d is taken: serving HTTP on port %d instead", server.http_port, port
            )
        return port

    async def start(self) -> None:
        server = self.config.server
        quiet_resource_errors(
            asyncio.get_running_loop(), self.main_stats, RateLimitedLog(log, interval=10.0)
        )
        copied = await asyncio.to_thread(prepare_root, self.config)
        if copied:
            log.info("placed boot binaries in %s: %s", self.config.tftp_root, ", ".join(copied))
        if grub.uses_grub(self.config) and server.dhcp != "full":
            log.warning(
                "loader grub without --dhcp full: GRUB reads its menu from the site DHCP "
                "server's next-server, which must be %s (docs/secure-boot.md)",
                self.server_ip,
            )
        http_port = await self._start_http()
        self.policy = BootPolicy(self.config, self.server_ip, http_port)
        try:
            if server.tftp_port:
                await self._start_tftp(server.tftp_port)
            if server.dhcp == "proxy":
                proxy = ProxyDhcpServer(
                    self.policy,
                    self.records,
                    server_ip=self.server_ip,
                    interface=self.interface.name,
                    port=server.dhcp_port,
                    proxy_port=server.proxy_port,
                )
                await self._start_service("dhcp", proxy, proxy.start())
            elif server.dhcp == "full":
                await self._start_full_dhcp()
        except BaseException:
            await self.close()
            raise
        publisher = InUsePublisher(self.config.root, self.records.booted_versions)
        self._in_use_task = asyncio.create_task(publisher.run(), name="netboot-in-use")
        log.info(
            "netboot serving %s on %s: HTTP %s, TFTP %s, DHCP %s, root %s, loop %s",
            self.server_ip,
            self.interface.name,
            self.policy.http_base,
            server.tftp_port or "off",
            server.dhcp,
            self.config.root,
            eventloop.name(),
        )

    async def _start_service(self, name: str, service: Service, starting: Awaitable[None]) -> None:
        """Await the service's start; socket errors become one clear line."""
        try:
            await starting
        except PermissionError as exc:
            raise StartupError(
                f"cannot open the {name} sockets: {exc.strerror} "
                "(run as root or with CAP_NET_BIND_SERVICE)"
            ) from None
        except OSError as exc:
            raise StartupError(f"cannot open the {name} sockets: {exc.strerror or exc}") from None
        self.services[name] = service

    async def _start_tftp(self, port: int) -> None:
        from netboot.tftp import TftpServer

        # Blocks that fit one Ethernet frame: many ROMs cannot reassemble IP fragments.
        mtu = interface_mtu(self.interface.name)
        tftp = TftpServer(
            self.config.tftp_root,
            self.records,
            max_blksize=mtu - 32,
            max_transfers=self.config.server.tftp_max_transfers,
            max_per_client=self.config.server.tftp_max_per_client,
            virtual=self._virtual_file,
        )
        # Bound to the advertised address so replies come from the address the client asked
        # (a multi-homed host would otherwise pick a source by route); 0.0.0.0 when that
        # address is not local (NAT, a VIP elsewhere).
        host = self.server_ip if self.server_ip == self.interface.address else "0.0.0.0"
        await self._start_service("tftp", tftp, tftp.start(host, port))

    def _virtual_file(self, name: str) -> bytes | None:
        """TFTP's generated files, from the current policy (a reload replaces it)."""
        policy = self.policy
        return policy.tftp_file(name) if policy is not None else None

    async def _start_full_dhcp(self) -> None:
        from netboot.dhcp.detect import find_other_dhcp_servers
        from netboot.dhcp.full import FullDhcpServer
        from netboot.dhcp.prerequisites import FullDhcpError

        assert self.policy is not None
        server = self.config.server
        full = FullDhcpServer(
            self.config,
            self.policy,
            self.records,
            server_ip=self.server_ip,
            interface=self.interface.name,
            network=self.interface.network,
            port=server.dhcp_port,
            proxy_port=server.proxy_port,
        )
        full.check_config()
        try:
            if not self.config.dhcp.force:
                # 4 s: dnsmasq pings an address for up to 3 s before its first OFFER
                others = await find_other_dhcp_servers(self.interface.name, timeout=4.0)
                others = [o for o in others if o != self.server_ip]
                if others:
                    raise StartupError(
                        f"another DHCP server answers on {self.interface.name} "
                        f"({', '.join(others)}): refusing full DHCP mode; use proxy mode, "
                        "or --force if you are sure"
                    )
            await self._start_service("dhcp", full, full.start())
        except FullDhcpError as exc:
            raise StartupError(str(exc)) from None

    async def reload(self, loaded: Config) -> list[str]:
        """Take a re-read config (see `netboot.reload`); returns the keys that need a
        restart. Sockets, leases, records and transfers in flight are kept."""
        assert self.policy is not None and self.app is not None
        restart = reload.restart_keys(self.config, loaded)
        config = reload.applicable(self.config, loaded)
        if config.ipxe.binaries_dir != self.config.ipxe.binaries_dir:
            await asyncio.to_thread(prepare_root, config)
        policy = BootPolicy(config, self.server_ip, self.policy.http_port)
        # plain attribute swaps: HTTP's thread sees the old or the new object, never a mix
        self.config, self.app.config, self.policy = config, config, policy
        dhcp = self.services.get("dhcp")
        if dhcp is not None:
            dhcp.policy = policy  # type: ignore[attr-defined]
        return restart

    async def close(self) -> None:
        if self._in_use_task is not None:
            self._in_use_task.cancel()
            self._in_use_task = None
        await self.multicast.close()
        for service in reversed(list(self.services.values())):
            try:
                await service.close()
            except Exception:
                log.exception("error while closing a service")
        self.services.clear()
        if self.http is not None:
            await self.http.close()
            self.http = None


async def reload_config(server: NetbootServer, load: Callable[[], Config]) -> None:
    """SIGHUP: re-read the config; a bad one keeps the running config (one line each)."""
    sdnotify.notify("RELOADING=1")
    try:
        loaded = await asyncio.to_thread(load)
        restart = await server.reload(loaded)
    except ConfigError as exc:
        log.error("reload failed, keeping the running config: %s", exc)
    else:
        log.info("reloaded %s", loaded.source)
        if restart:
            log.warning("changed but needs a restart: %s", ", ".join(restart))
    sdnotify.notify("READY=1")


async def run_until_signalled(
    server: NetbootServer, load: Callable[[], Config] | None = None
) -> int:
    """Serve until SIGINT or SIGTERM; SIGHUP re-reads the config through `load`. Tells
    systemd READY=1 once every socket is bound and STOPPING=1 when it stops."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: list[asyncio.Task] = []
    lock = asyncio.Lock()

    async def reload_once() -> None:
        async with lock:  # two quick SIGHUPs: one reload after the other
            await reload_config(server, load or (lambda: server.config))

    def on_hup() -> None:
        reloads[:] = [task for task in reloads if not task.done()]
        reloads.append(loop.create_task(reload_once()))

    signals = {signal.SIGINT: stop.set, signal.SIGTERM: stop.set, signal.SIGHUP: on_hup}
    for sig, handler in signals.items():
        loop.add_signal_handler(sig, handler)
    await server.start()
    # Everything built so far (scapy's tables, the modules, the policy) lives as long as the
    # process: keep it out of the cyclic collector's full passes, which otherwise walk
    # ~140,000 objects (70 ms measured, more under load) in the middle of a DHCP storm.
    gc.freeze()
    sdnotify.notify("READY=1", f"STATUS=serving {server.server_ip} on {server.interface.name}")
    try:
        await stop.wait()
    finally:
        sdnotify.notify("STOPPING=1")
        log.info("stopping")
        for task in reloads:
            task.cancel()
        await server.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0
