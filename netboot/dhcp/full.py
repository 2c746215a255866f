"""Full DHCP (RFC 2131/2132): addresses from the local pool, plus the PXE boot answer.

Shaped like the proxy server: glance at the bytes, decode only DHCP requests, decide, answer.
Deciding may wait (an ARP probe before a new address is offered; the lease write before an
ACK leaves), so each decoded request becomes a task; requests of one client are handled in
order, and an address is taken in memory *before* any wait, so two clients never get the
same one. Nothing a packet contains can raise out of `datagram_received`.

PXE clients get their lease and the same boot answer as in proxy mode; port 4011 is served
by a ProxyDhcpServer for firmware that asks there anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from netboot.config import Config
from netboot.dhcp import packet
from netboot.dhcp.leases import LeaseFileError, LeaseStore, client_key
from netboot.dhcp.packet import (
    ACK,
    BROADCAST_FLAG,
    DECLINE,
    DISCOVER,
    INFORM,
    MESSAGE_NAMES,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpRequest,
)
from netboot.dhcp.pool import AddressPool, build_pool
from netboot.dhcp.prefilter import glance
from netboot.dhcp.probe import ArpProber
from netboot.dhcp.proxy import ProxyDhcpServer
from netboot.dhcp.pxe import pxe_options
from netboot.dhcp.sockets import (
    CLIENT_PORT,
    LIMITED_BROADCAST,
    SERVER_PORT,
    open_udp_socket,
    reply_address,
)
from netboot.errors import UserError
from netboot.policy import BootPolicy, PxeAnswer
from netboot.records import ClientRecords

log = logging.getLogger("netboot.dhcp.full")

OFFER_HOLD_SECONDS = 60.0  # an offered address waits this long for the client's REQUEST
MAX_PROBES_PER_DISCOVER = 3  # bounds the time one DISCOVER can take (each probe <= 0.5 s)
MAX_PENDING = 256  # requests being decided at once; more are dropped (a flood, not a LAN)
EXHAUSTED_LOG_EVERY = 60.0  # seconds between "no address" warnings for one client
HANDLED = (DISCOVER, REQUEST, DECLINE, RELEASE, INFORM)

Reply = tuple[bytes, tuple[str, int]]


class FullDhcpError(UserError):
    """Full DHCP cannot start (lease file unreadable, probe socket refused); one line."""


class _ClientLock:
    """Serialises the requests of one client; dropped when nobody uses it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, server: FullDhcpServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.server.dispatch(data, addr)
        except Exception:  # a bug must cost one packet, never the server
            self.server.stats["errors"] += 1
            log.exception("error handling a DHCP packet from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error: %s", exc)


class FullDhcpServer:
    """Hands out addresses on one interface and remembers them across restarts."""

    def __init__(
        self,
        config: Config,
        policy: BootPolicy,
        records: ClientRecords,
        *,
        server_ip: str,
        interface: str,
        network: IPv4Interface,
        port: int = SERVER_PORT,
        proxy_port: int = 4011,
    ) -> None:
        self.config = config
        self.policy = policy
        self.records = records
        self.server_ip = server_ip
        self.interface = interface
        self.network = network
        self.port = port
        self.proxy_port = proxy_port
        self.stats: Counter[str] = Counter()
        dhcp = config.dhcp
        self.lease_time = int(dhcp.lease_time)
        self.decline_time = int(dhcp.decline_time)
        self.leases = LeaseStore(Path(dhcp.lease_file))
        self.prober: ArpProber | None = None
        self._pool: AddressPool | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._proxy: ProxyDhcpServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_locks: dict[str, _ClientLock] = {}
        self._exhausted_logged: dict[str, float] = {}

    # --- life cycle -------------------------------------------------------------------

    @property
    def pool(self) -> AddressPool:
        if self._pool is None:
            self._pool = build_pool(self.config, self.server_ip, self.network)
        return self._pool

    def check_config(self) -> AddressPool:
        """Raise ConfigError (naming the key) if the `[dhcp]` settings cannot work here."""
        self._pool = None
        return self.pool

    async def start(self) -> None:
        pool = self.check_config()
        try:
            await self.leases.load()
        except (LeaseFileError, OSError) as exc:
            raise FullDhcpError(
                str(exc)
                if isinstance(exc, LeaseFileError)
                else f"lease file {self.leases.path}: {exc.strerror or exc}"
            ) from None
        if self.config.dhcp.probe:
            if self.interface:
                prober = ArpProber(self.interface)
                try:
                    prober.open()
                except OSError as exc:
                    raise FullDhcpError(
                        f"cannot open the ARP probe socket on {self.interface}: {exc.strerror}"
                        " (run as root, or set dhcp.probe = false)"
                    ) from None
                self.prober = prober
            else:
                log.warning("no interface given: addresses are offered without an ARP probe")
        loop = asyncio.get_running_loop()
        try:
            sock = open_udp_socket(self.port, self.interface)
            transport, _ = await loop.create_datagram_endpoint(lambda: _Endpoint(self), sock=sock)
            self._transport = transport  # type: ignore[assignment]
            if self.proxy_port:
                self._proxy = ProxyDhcpServer(
                    self.policy,
                    self.records,
                    server_ip=self.server_ip,
                    interface=self.interface,
                    port=self.port,
                    proxy_port=self.proxy_port,
                    listen_67=False,
                )
                await self._proxy.start()
        except BaseException:
            await self.close()
            raise
        log.info(
            "full DHCP on %s port %d (interface %s): pool %s, %d leases known, lease file %s",
            self.server_ip,
            self.port,
            self.interface or "any",
            pool.describe(),
            len(self.leases.leases()),
            self.leases.path,
        )

    async def close(self) -> None:
        """Stop listening, let decisions in flight finish (their lease writes), then stop."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
        if self.leases.dirty:
            try:
                await self.leases.save()
            except OSError as exc:
                log.error("could not write the lease file %s: %s", self.leases.path, exc)
        if self.prober is not None:
            self.prober.close()
            self.prober = None

    # --- packets in -------------------------------------------------------------------

    def dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        """Glance, decode, and hand the request to a task of its own."""
        self.stats["received"] += 1
        seen = glance(data)
        if seen is None:
            self.stats["malformed" if data[:1] == b"\x01" else "ignored"] += 1
            return
        if seen.msg_type not in HANDLED:
            self.stats["ignored"] += 1
            return
        try:
            request = packet.parse(data)
        except packet.MalformedPacket as exc:
            self.stats["malformed"] += 1
            log.debug("dropped malformed packet from %s: %s", addr[0], exc)
            return
        if request.htype != 1 or request.hlen != 6:
            self.stats["ignored"] += 1  # only Ethernet clients have a MAC we can key on
            return
        if len(self._tasks) >= MAX_PENDING:
            self.stats["dropped_busy"] += 1
            return
        task = asyncio.get_running_loop().create_task(self._handle(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, request: DhcpRequest) -> None:
        key = client_key(request.client_id, request.mac)
        entry = self._client_locks.setdefault(key, _ClientLock())
        entry.users += 1
        try:
            async with entry.lock:
                reply = await self._answer(request, key)
            if reply is not None and self._transport is not None:
                self._transport.sendto(*reply)
        except Exception:
            self.stats["errors"] += 1
            log.exception(
                "error answering %s from %s", MESSAGE_NAMES.get(request.msg_type), request.mac
            )
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._client_locks[key]

    async def _answer(self, request: DhcpRequest, key: str) -> Reply | None:
        if not self._relay_ok(request):
            return None
        kind = request.msg_type
        if kind == DISCOVER:
            return await self._discover(request, key)
        if kind == REQUEST:
            return await self._request(request, key)
        if kind == DECLINE:
            await self._decline(request, key)
        elif kind == RELEASE:
            await self._release(request, key)
        elif kind == INFORM:
            return self._inform(request)
        return None

    def _relay_ok(self, request: DhcpRequest) -> bool:
        """Only the local subnet has a pool: a relay from elsewhere gets no answer."""
        if request.giaddr in ("", "0.0.0.0"):
            return True
        if IPv4Address(request.giaddr) in self.pool.subnet:
            return True
        self.stats["ignored_relay"] += 1
        log.debug("relay %s is outside %s: not answered", request.giaddr, self.pool.subnet)
        return False

    # --- DISCOVER ---------------------------------------------------------------------

    async def _discover(self, request: DhcpRequest, key: str) -> Reply | None:
        mac = request.mac
        tried: set[IPv4Address] = set()
        for _ in range(MAX_PROBES_PER_DISCOVER):
            address, needs_probe = self._choose(request, key, tried)
            if address is None:
                self._log_exhausted(key, mac)
                return None
            now = time.time()
            self.leases.hold_offer(key, str(address), now + OFFER_HOLD_SECONDS)
            if not needs_probe or self.prober is None:
                break
            tried.add(address)
            self.stats["probes"] += 1
            if not await self.prober.in_use(address):
                break
            self.leases.drop_offer(key)
            self.stats["probe_conflicts"] += 1
            log.warning(
                "address %s answers ARP although nobody has a lease on it: not offered for %d s",
                address,
                self.decline_time,
            )
            self.leases.block(
                str(address), time.time() + self.decline_time, "in use (answered an ARP probe)"
            )
            await self._save_quietly()
        else:
            return None
        self.stats["offers"] += 1
        return self._lease_reply(request, OFFER, str(address), "dhcp-offer")

    def _choose(
        self, request: DhcpRequest, key: str, tried: set[IPv4Address]
    ) -> tuple[IPv4Address | None, bool]:
        """RFC 2131 4.3.1 order: reservation, current or last binding, pending offer,
        requested address, a never-used address, the longest-expired one. The flag says
        whether the address must be probed (it is not this client's own lease)."""
        pool, leases, now, mac = self.pool, self.leases, time.time(), request.mac

        def usable(address: IPv4Address | None) -> bool:
            return (
                address is not None
                and address not in tried
                and pool.may_use(address, mac)
                and leases.free_for(key, str(address), now)
            )

        reservation = pool.reservation(mac)
        own = leases.lease_of(key)
        own_address = IPv4Address(own.address) if own is not None else None
        if reservation is not None and reservation.address is not None:
            if usable(reservation.address):
                return reservation.address, reservation.address != own_address
            log.warning(
                "reserved address %s of %s is in use: offering a pool address",
                reservation.address,
                mac,
            )
        if usable(own_address):
            return own_address, False
        offer = leases.offer_of(key, now)
        if offer is not None and usable(IPv4Address(offer.address)):
            return IPv4Address(offer.address), False  # probed when first offered
        requested = _address_or_none(request.requested_ip)
        if usable(requested):
            return requested, True
        oldest: tuple[float, IPv4Address] | None = None
        for address in pool.dynamic_addresses():
            if not usable(address):
                continue
            if leases.never_leased(str(address)):
                return address, True
            expired = leases.expired_since(str(address))
            if oldest is None or expired < oldest[0]:
                oldest = (expired, address)
        return (oldest[1], True) if oldest is not None else (None, False)

    def _log_exhausted(self, key: str, mac: str) -> None:
        self.stats["no_address"] += 1
        now = time.monotonic()
        if now - self._exhausted_logged.get(key, -EXHAUSTED_LOG_EVERY) >= EXHAUSTED_LOG_EVERY:
            self._exhausted_logged[key] = now
            log.warning(
                "no address available for %s: pool %s is exhausted", mac, self.pool.describe()
            )
        self.records.event(mac, "dhcp-no-address", pool=self.pool.describe())

    # --- REQUEST ----------------------------------------------------------------------

    async def _request(self, request: DhcpRequest, key: str) -> Reply | None:
        """Selecting (54 + 50), init-reboot (50 only), renewing/rebinding (ciaddr)."""
        now = time.time()
        mac = request.mac
        server_id = request.server_id
        if server_id is not None and server_id != self.server_ip:
            self.leases.drop_offer(key)  # the client took another server's offer
            self.stats["ignored_other_server"] += 1
            return None
        if server_id is not None:
            state, address = "selecting", _address_or_none(request.requested_ip or request.ciaddr)
        elif request.requested_ip is not None:
            state, address = "init-reboot", _address_or_none(request.requested_ip)
        elif request.ciaddr not in ("", "0.0.0.0"):
            state, address = "renewing", _address_or_none(request.ciaddr)
        else:
            self.stats["malformed"] += 1
            return None
        if address is None or address not in self.pool.subnet:
            return self._nak(request, f"{state}: {address} is not on {self.pool.subnet}")
        own = self.leases.lease_of(key)
        renewing = state == "renewing"
        if not self.leases.free_for(key, str(address), now, in_use_by_client=renewing):
            return self._nak(request, f"{state}: {address} is not free for this client")
        if not self.pool.may_use(address, mac):
            return self._nak(request, f"{state}: {address} is not in the pool or reserved")
        if state == "selecting":
            offer = self.leases.offer_of(key, now)
            if offer is None and (own is None or own.address != str(address)):
                # our offer timed out: still fine if the address is free (checked above)
                log.debug("REQUEST for %s from %s without a pending offer", address, mac)
        elif state == "init-reboot":
            if own is None:
                self.stats["ignored_unknown"] += 1  # RFC 2131 4.3.2: remain silent
                return None
            if own.address != str(address):
                return self._nak(request, f"init-reboot: {address} is not its address")
        reservation = self.pool.reservation(mac)
        hostname = reservation.hostname if reservation is not None else ""
        self.leases.bind(key, mac, str(address), now + self.lease_time, hostname)
        try:
            await self.leases.save()
        except OSError as exc:
            self.stats["persist_errors"] += 1
            log.error(
                "lease for %s not written to %s (%s): no ACK sent", address, self.leases.path, exc
            )
            return None
        self.stats["acks"] += 1
        self.records.learn(mac, str(address))
        return self._lease_reply(request, ACK, str(address), "dhcp-ack", state=state)

    def _nak(self, request: DhcpRequest, reason: str) -> Reply:
        self.stats["naks"] += 1
        self.records.event(request.mac, "dhcp-nak", reason=reason)
        # RFC 2131 4.3.2: NAKs are broadcast, or sent to the relay with the broadcast bit set
        nak_request = replace(request, ciaddr="0.0.0.0")
        if request.giaddr not in ("", "0.0.0.0"):
            nak_request = replace(nak_request, flags=request.flags | BROADCAST_FLAG)
            destination = (request.giaddr, SERVER_PORT)
        else:
            destination = (LIMITED_BROADCAST, CLIENT_PORT)
        payload = packet.build_reply(
            nak_request,
            NAK,
            server_ip=self.server_ip,
            options=[("error_message", reason.encode()[:200])],
        )
        return payload, destination

    # --- DECLINE, RELEASE, INFORM -----------------------------------------------------

    async def _decline(self, request: DhcpRequest, key: str) -> None:
        address = _address_or_none(request.requested_ip)
        if request.server_id not in (None, self.server_ip) or address is None:
            self.stats["ignored"] += 1
            return
        lease = self.leases.lease_at(str(address))
        offer = self.leases.offer_of(key, time.time())
        ours = (lease is not None and lease.client == key) or (
            offer is not None and offer.address == str(address)
        )
        if not ours:
            self.stats["ignored"] += 1
            return
        self.stats["declines"] += 1
        log.warning(
            "%s declined %s (in use on the LAN): not handed out for %d s",
            request.mac,
            address,
            self.decline_time,
        )
        self.leases.block(
            str(address), time.time() + self.decline_time, f"declined by {request.mac}"
        )
        self.records.event(request.mac, "dhcp-decline", address=str(address))
        await self._save_quietly()

    async def _release(self, request: DhcpRequest, key: str) -> None:
        if request.server_id not in (None, self.server_ip):
            self.stats["ignored"] += 1
            return
        if not self.leases.end(key, request.ciaddr, time.time()):
            self.stats["ignored"] += 1
            return
        self.stats["releases"] += 1
        self.records.event(request.mac, "dhcp-release", ip=request.ciaddr)
        await self._save_quietly()

    def _inform(self, request: DhcpRequest) -> Reply | None:
        """RFC 2131 3.4: configuration only: no lease, no yiaddr, sent to ciaddr."""
        if request.ciaddr in ("", "0.0.0.0"):
            self.stats["malformed"] += 1
            return None
        self.stats["informs"] += 1
        self.records.learn(request.mac, request.ciaddr)
        return self._lease_reply(request, ACK, "0.0.0.0", "dhcp-inform-ack", lease=False)

    async def _save_quietly(self) -> None:
        """Persist a change that needs no answer; a failed write is retried at the next."""
        try:
            await self.leases.save()
        except OSError as exc:
            self.stats["persist_errors"] += 1
            log.error("could not write the lease file %s: %s", self.leases.path, exc)

    # --- replies ----------------------------------------------------------------------

    def _lease_reply(
        self,
        request: DhcpRequest,
        msg_type: int,
        address: str,
        event: str,
        *,
        lease: bool = True,
        state: str = "",
    ) -> Reply:
        options = self._config_options(request, lease)
        siaddr, boot_file = "0.0.0.0", ""
        answer = self.policy.pxe_answer(request) if request.is_pxe else None
        if isinstance(answer, PxeAnswer):
            options.extend(pxe_options(request, answer))
            siaddr = self.server_ip  # the boot server, for HTTP answers too (see proxy.py)
            boot_file = answer.boot_file
        payload = packet.build_reply(
            request if msg_type == ACK else replace(request, ciaddr="0.0.0.0"),
            msg_type,
            server_ip=self.server_ip,
            yiaddr=address,
            siaddr=siaddr,
            boot_file=boot_file,
            options=options,
        )
        detail: dict[str, Any] = {"state": state, "boot_file": boot_file}
        if isinstance(answer, PxeAnswer):
            detail.update(arch=answer.arch, firmware=answer.firmware, ipxe=answer.ipxe)
        elif answer is not None:
            detail["no_boot"] = answer.reason
        self.records.event(request.mac, event, ip=address if lease else request.ciaddr, **detail)
        return payload, reply_address(request)

    def _config_options(self, request: DhcpRequest, lease: bool) -> list[tuple[str | int, Any]]:
        """Options 1, 28, 3, 6, 15, 12 and, for a lease, 51, 58, 59."""
        dhcp = self.config.dhcp
        subnet = self.pool.subnet
        options: list[tuple[str | int, Any]] = [
            ("subnet_mask", str(subnet.netmask)),
            ("broadcast_address", str(subnet.broadcast_address)),
        ]
        if dhcp.router:
            options.append(("router", dhcp.router))
        if dhcp.dns:
            options.append(("name_server", *dhcp.dns))
        if dhcp.domain:
            options.append(("domain", dhcp.domain.encode()))
        reservation = self.pool.reservation(request.mac)
        if reservation is not None and reservation.hostname:
            options.append(("hostname", reservation.hostname.encode()))
        if lease:
            options.extend(
                [
                    ("lease_time", self.lease_time),
                    ("renewal_time", self.lease_time // 2),
                    ("rebinding_time", self.lease_time * 7 // 8),
                ]
            )
        return options


def _address_or_none(value: str | None) -> IPv4Address | None:
    if not value or value == "0.0.0.0":
        return None
    try:
        return IPv4Address(value)
    except ValueError:
        return None
