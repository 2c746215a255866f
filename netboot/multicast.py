"""udpcast sessions on demand: one `udp-sender` per image version, started when a client asks.

A client whose kernel command line says `netboot.transfer=multicast` asks
`GET /multicast/IMAGE/VERSION` before fetching its squashfs. The first asker starts a
udp-sender; everyone asking within `boot.multicast_window` seconds gets the same port base
and joins the same session (the sender starts sending `window` seconds after its first
receiver connected). A client asking later, while that session runs, opens the next
session on a free port base, which later askers join in turn: a room whose asks spread
over more than one window costs one image per window, not one per late client. Only when
all `boot.multicast_sessions` slots are busy is a client told to use HTTP.
The rendez-vous goes to 224.0.0.1 (link-local) unless `boot.multicast_rdv_address` names a
group the site's routers forward: without it, a client off the interface's subnets is told
at once to use HTTP instead of waiting for a session it could never join.
Senders are asyncio subprocesses (never blocking the loop), reaped when they exit and
killed when the server stops. See docs/storms.md for the measurements and network needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from netboot import layout
from netboot.config import Config
from netboot.netinfo import interface_networks

log = logging.getLogger("netboot.multicast")

SENDER = "udp-sender"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
JOIN_MARGIN = 1.5  # seconds before the sender starts when we stop sending askers to it
CLIENT_SLACK = 10  # the receiver's --start-timeout beyond the window


@dataclass
class Session:
    """One running udp-sender for one image version."""

    image: str
    version: str
    portbase: int
    opened: float
    process: asyncio.subprocess.Process | None = None
    reaper: asyncio.Task[None] | None = field(default=None, repr=False)


class MulticastSessions:
    """The udp-senders of one `netboot serve`; call `offer` on the loop that owns it."""

    def __init__(
        self,
        config: Config,
        interface: str,
        sender: str = SENDER,
        networks: Callable[[], list[ipaddress.IPv4Network]] | None = None,
    ) -> None:
        self.config = config
        self.interface = interface
        self.sender = sender
        # the interface's subnets, read at each ask (an address may be added while serving)
        self.networks = networks or (lambda: interface_networks(interface))
        self._opening = asyncio.Lock()
        self.sessions: dict[int, Session] = {}  # by port base: one slot each
        self.stats: dict[str, int] = {
            "offered": 0,
            "started": 0,
            "declined": 0,
            "off_segment": 0,
            "sender_failed": 0,
        }

    @property
    def window(self) -> int:
        return self.config.boot.multicast_window

    def _free_portbase(self) -> int | None:
        used = {s.portbase for s in self.sessions.values()}
        base = self.config.boot.multicast_portbase
        for slot in range(self.config.boot.multicast_sessions):
            port = base + 2 * slot
            if port not in used and port + 1 <= 65535:
                return port
        return None

    def _answer(self, session: Session) -> dict[str, Any]:
        self.stats["offered"] += 1
        answer: dict[str, Any] = {
            "portbase": session.portbase,
            "ttl": self.config.boot.multicast_ttl,
            "timeout": self.window + CLIENT_SLACK,
        }
        if self.config.boot.multicast_rdv_address:
            answer["rdv"] = self.config.boot.multicast_rdv_address
        return answer

    def _decline(self, reason: str) -> dict[str, Any]:
        self.stats["declined"] += 1
        return {"reason": reason}

    def _unreachable(self, client_ip: str) -> str | None:
        """Why the client at `client_ip` (the HTTP peer) cannot join a session, or None.
        With a routed rendez-vous group anyone may; without, only the interface's subnets."""
        if self.config.boot.multicast_rdv_address:
            return None
        try:
            address = ipaddress.IPv4Address(client_ip)
        except ValueError:
            return "client address unknown; multicast rendez-vous is link-local"
        networks = self.networks()
        if any(address in network for network in networks):
            return None
        subnets = ", ".join(str(network) for network in networks) or "no IPv4 address"
        return (
            f"client {address} is not on the segment of {self.interface} ({subnets}); multicast "
            "rendez-vous is link-local (boot.multicast_rdv_address unset)"
        )

    async def offer(self, image: str, version: str, client_ip: str) -> dict[str, Any]:
        """{portbase, ttl, timeout[, rdv]} of the session to join, or {reason} to use HTTP."""
        if not SAFE_NAME.match(image) or not SAFE_NAME.match(version):
            return self._decline("bad image or version name")
        unreachable = self._unreachable(client_ip)
        if unreachable is not None:
            self.stats["off_segment"] += 1
            return self._decline(unreachable)
        # one ask at a time past here: asks arriving together must see the session the
        # first of them is still starting, not open one each
        async with self._opening:
            return await self._join_or_open(image, version)

    async def _join_or_open(self, image: str, version: str) -> dict[str, Any]:
        now = time.monotonic()
        for session in self.sessions.values():
            joinable = now - session.opened < self.window - JOIN_MARGIN
            if joinable and (session.image, session.version) == (image, version):
                return self._answer(session)
        squashfs = layout.version_dir(self.config.root, image, version) / layout.SQUASHFS
        if not await asyncio.to_thread(squashfs.is_file):
            return self._decline("no such image version")
        if shutil.which(self.sender) is None:
            return self._decline(f"{self.sender} is not installed on the server")
        portbase = self._free_portbase()
        if portbase is None:
            return self._decline("all multicast sessions are busy")
        session = Session(image, version, portbase, now)
        try:
            session.process = await asyncio.create_subprocess_exec(
                *self.command(str(squashfs), portbase),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            self.stats["sender_failed"] += 1
            return self._decline(f"cannot start {self.sender}: {exc.strerror or exc}")
        self.sessions[portbase] = session
        self.stats["started"] += 1
        session.reaper = asyncio.create_task(self._reap(session))
        log.info("multicast: %s %s on ports %d-%d", image, version, portbase, portbase + 1)
        return self._answer(session)

    def command(self, squashfs: str, portbase: int) -> list[str]:
        """The udp-sender command line (docs/storms.md explains each flag)."""
        boot = self.config.boot
        cmd = [
            self.sender,
            "--file",
            squashfs,
            "--interface",
            self.interface,
            "--portbase",
            str(portbase),
            "--ttl",
            str(boot.multicast_ttl),
            "--nokbd",
            # start `window` s after the first receiver joined, whoever else came
            "--min-receivers",
            "100000",
            "--max-wait",
            str(boot.multicast_window),
            "--rexmit-hello-interval",
            "200",
            "--start-timeout",
            str(boot.multicast_window + CLIENT_SLACK),
        ]
        if boot.multicast_rdv_address:
            cmd += ["--mcast-rdv-address", boot.multicast_rdv_address]
        if boot.multicast_data_address:  # receivers learn it from the sender's hello
            cmd += ["--mcast-data-address", boot.multicast_data_address]
        if boot.multicast_max_bitrate:
            cmd += ["--max-bitrate", boot.multicast_max_bitrate]
        return cmd

    async def _reap(self, session: Session) -> None:
        assert session.process is not None
        key = (session.image, session.version)
        try:
            _, err = await session.process.communicate()
            rc = session.process.returncode
            if rc != 0:
                self.stats["sender_failed"] += 1
                last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
                log.warning("multicast: %s %s: %s exited %s: %s", *key, self.sender, rc, last[0])
            else:
                log.info("multicast: %s %s session done", *key)
        finally:
            if self.sessions.get(session.portbase) is session:
                del self.sessions[session.portbase]

    async def close(self) -> None:
        """Stop every sender (SIGTERM, then SIGKILL after 2 s) and wait for them."""
        for session in list(self.sessions.values()):
            process = session.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for session in list(self.sessions.values()):
            if session.reaper is None:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(session.reaper), 2)
            except TimeoutError:
                if session.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        session.process.kill()
                await session.reaper
        self.sessions.clear()


Offer = Callable[[str, str, str], Awaitable[dict[str, Any]]]  # image, version, client IP


def on_owner_loop(loop: asyncio.AbstractEventLoop, call: Offer) -> Offer:
    """`call` runnable from the HTTP thread's loop: it runs on `loop`, which owns the
    sessions and their subprocesses."""

    async def run(image: str, version: str, client_ip: str) -> dict[str, Any]:
        if asyncio.get_running_loop() is loop:
            return await call(image, version, client_ip)
        future = asyncio.run_coroutine_threadsafe(call(image, version, client_ip), loop)
        return await asyncio.wrap_future(future)

    return run


def shell_answer(answer: dict[str, Any]) -> str:
    """The answer as `NB_MC_*=` lines lib.sh sources (values are numbers or plain text)."""
    lines = [
        f"NB_MC_{key.upper()}='{str(value).replace(chr(39), '')}'" for key, value in answer.items()
    ]
    return "\n".join(lines) + "\n"
