"""Full DHCP (RFC 2131/2132): addresses from the pools (`subnets.py`), plus the boot answer.

This module is the RFC 2131 state machine and nothing else: which message does what to the
leases, in which order, and when to wait. The other jobs live next to it: packets come in
through `endpoint.py` (glance, decode, counters), the address comes from `allocator.py`
(pure), the bytes from `replies.py` (pure), the lease file from `leases.py`, the
start-up steps from `prerequisites.py`.

Deciding may wait (an ARP probe before a new address is offered; the lease write before
an ACK leaves), so each request becomes a task; one client's are handled in order
(`ordering.py`); an address is taken in memory *before* any wait: no two clients share one.

PXE clients get a lease and proxy mode's boot answer; a ProxyDhcpServer serves port 4011.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from netboot.boot import BootPolicy
from netboot.config import Config
from netboot.datagram import Address
from netboot.dhcp import allocator, replies
from netboot.dhcp.allocator import Client, address_or_none
from netboot.dhcp.endpoint import DhcpEndpoint, Reply, open_dhcp_endpoint
from netboot.dhcp.facts import facts_from_request
from netboot.dhcp.leases import LeaseStore, client_key
from netboot.dhcp.ordering import ClientLocks
from netboot.dhcp.packet import (
    ACK,
    DECLINE,
    DISCOVER,
    INFORM,
    MESSAGE_NAMES,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpRequest,
)
from netboot.dhcp.pool import AddressPool, build_pool
from netboot.dhcp.prefilter import Glance
from netboot.dhcp.prerequisites import load_leases, open_prober
from netboot.dhcp.probe import ArpProber
from netboot.dhcp.proxy import ProxyDhcpServer
from netboot.dhcp.relay import relay_details
from netboot.dhcp.sockets import SERVER_PORT
from netboot.dhcp.subnets import Segment, relayed_segments, segment_for
from netboot.ratelimit import limited
from netboot.records import ClientRecords

log = logging.getLogger("netboot.dhcp.full")

# An offered address waits this long for the client's REQUEST (clients ask within seconds);
# when the pool runs dry, an offer older than OFFER_MIN_HOLD_SECONDS is reclaimed first.
OFFER_HOLD_SECONDS, OFFER_MIN_HOLD_SECONDS = 15.0, 3.0
MAX_PROBES_PER_DISCOVER = 3  # bounds the time one DISCOVER can take (each probe <= 0.5 s)
MAX_PENDING = 256  # requests being decided at once; more are dropped (a flood, not a LAN)
HANDLED = (DISCOVER, REQUEST, DECLINE, RELEASE, INFORM)


def _wanted(seen: Glance) -> bool:
    return seen.msg_type in HANDLED


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
        self._proxy: ProxyDhcpServer | None = None  # port 4011, once started
        self.config, self.policy, self.records = config, policy, records
        self.server_ip, self.interface, self.network = server_ip, interface, network
        self.port, self.proxy_port = port, proxy_port
        self.stats: Counter[str] = Counter()
        self.lease_time = int(config.dhcp.lease_time)
        self.decline_time = int(config.dhcp.decline_time)
        self.leases = LeaseStore(Path(config.dhcp.lease_file))
        self.prober: ArpProber | None = None
        self._pool: AddressPool | None = None
        self._relayed: list[Segment] = []  # pools of `[dhcp.subnets]`, behind relays
        self._endpoint: DhcpEndpoint | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_locks = ClientLocks()

    @property
    def policy(self) -> BootPolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: BootPolicy) -> None:
        """A reload's new policy reaches port 4011 too, which the inner proxy answers."""
        self._policy = policy
        if self._proxy is not None:
            self._proxy.policy = policy

    # --- life cycle -------------------------------------------------------------------

    @property
    def pool(self) -> AddressPool:
        if self._pool is None:
            self._pool = build_pool(self.config, self.server_ip, self.network)
        return self._pool

    def check_config(self) -> AddressPool:
        """Raise ConfigError (naming the key) if the `[dhcp]` settings cannot work here."""
        self._pool = None
        self._relayed = relayed_segments(self.config, self.pool)
        return self.pool

    @property
    def settings(self) -> replies.Settings:
        return replies.Settings.from_config(self.config.dhcp, self.server_ip, self.pool.subnet)

    async def start(self) -> None:
        pool = self.check_config()
        await load_leases(self.leases)
        self.prober = open_prober(self.config.dhcp.probe, self.interface)
        try:
            self._endpoint = await open_dhcp_endpoint(
                self.port, self.interface, self.stats, log, _wanted, self._dispatch
            )
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
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=5.0)
            for task in pending:
                task.cancel()
        if self.leases.dirty:
            await self._save_quietly()
        if self.prober is not None:
            self.prober.close()
            self.prober = None

    # --- packets in: one task per request, one client at a time ------------------------

    def _dispatch(self, request: DhcpRequest, addr: Address) -> None:
        """Hand a decoded request to a task of its own (the reply is sent from there)."""
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
        try:
            async with self._client_locks.hold(key):
                if request.is_pxe:  # API mode: the boot answer may wait for the API
                    await self.policy.settle_api(facts_from_request(request))
                reply = await self._answer(request, key)
            if reply is not None and self._endpoint is not None:
                self._endpoint.send(*reply)
        except Exception:
            self.stats["errors"] += 1
            limited(log)(
                "answer_error",
                logging.ERROR,
                "error answering %s from %s",
                MESSAGE_NAMES.get(request.msg_type),
                request.mac,
                exc_info=True,
            )

    async def _answer(self, request: DhcpRequest, key: str) -> Reply | None:
        local = Segment(self.pool, self.settings, relayed=False)
        segment = segment_for(request.giaddr, local, self._relayed)
        if segment is None:
            self.stats["ignored_relay"] += 1  # a relay from a subnet without a pool
            log.debug("relay %s: no pool for its subnet, not answered", request.giaddr)
            return None
        client = Client(key, request.mac, address_or_none(request.requested_ip))
        kind = request.msg_type
        if kind == DISCOVER:
            return await self._discover(request, client, segment)
        if kind == REQUEST:
            return await self._request(request, client, segment)
        if kind == DECLINE:
            await self._decline(request, client)
        elif kind == RELEASE:
            await self._release(request, client)
        elif kind == INFORM:
            return self._inform(request, segment)
        return None

    # --- DISCOVER ---------------------------------------------------------------------

    async def _discover(
        self, request: DhcpRequest, client: Client, segment: Segment
    ) -> Reply | None:
        """Choose, hold the offer (before any wait), probe; up to three addresses."""
        tried: set[IPv4Address] = set()
        for _ in range(MAX_PROBES_PER_DISCOVER):
            choice = allocator.choose(segment.pool, self.leases, client, time.time(), tried)
            if choice.reserved_in_use is not None:
                log.warning(
                    "reserved address %s of %s is in use: offering a pool address",
                    choice.reserved_in_use,
                    client.mac,
                )
            address = choice.address
            if address is None and self._reclaim_offer(client, segment.pool):
                self.stats["offers_reclaimed"] += 1
                choice = allocator.choose(segment.pool, self.leases, client, time.time(), tried)
                address = choice.address
            if address is None:
                self._log_exhausted(client, segment.pool)
                return None
            self.leases.hold_offer(client.key, str(address), time.time() + OFFER_HOLD_SECONDS)
            if not choice.probe or self.prober is None or segment.relayed:
                break
            tried.add(address)
            self.stats["probes"] += 1
            if not await self.prober.in_use(address):
                break
            self.leases.drop_offer(client.key)
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
        return self._lease_reply(request, OFFER, str(address), "dhcp-offer", segment)

    def _reclaim_offer(self, client: Client, pool: AddressPool) -> bool:
        now, made_before = time.time(), OFFER_HOLD_SECONDS - OFFER_MIN_HOLD_SECONDS
        taken = self.leases.reclaim_offer(
            client.key, now, now + made_before, lambda a: pool.in_range(IPv4Address(a))
        )
        return taken is not None

    def _log_exhausted(self, client: Client, pool: AddressPool) -> None:
        """Counted per packet, logged at most once a minute whoever asks (a flood of new
        MACs would otherwise write a line each)."""
        self.stats["no_address"] += 1
        limited(log)(
            "no_address",
            logging.WARNING,
            "no address available for %s: pool %s is exhausted",
            client.mac,
            pool.describe(),
        )
        self.records.event(client.mac, "dhcp-no-address", pool=pool.describe())

    # --- REQUEST ----------------------------------------------------------------------

    async def _request(
        self, request: DhcpRequest, client: Client, segment: Segment
    ) -> Reply | None:
        """Selecting (54 + 50), init-reboot (50 only), renewing/rebinding (ciaddr)."""
        now = time.time()
        server_id = request.server_id
        if server_id is not None and server_id != self.server_ip:
            self.leases.drop_offer(client.key)  # the client took another server's offer
            self.stats["ignored_other_server"] += 1
            return None
        if server_id is not None:
            state, address = "selecting", address_or_none(request.requested_ip or request.ciaddr)
        elif request.requested_ip is not None:
            state, address = "init-reboot", address_or_none(request.requested_ip)
        elif request.ciaddr not in ("", "0.0.0.0"):
            state, address = "renewing", address_or_none(request.ciaddr)
        else:
            self.stats["malformed"] += 1
            return None
        refused = allocator.refusal(
            segment.pool, self.leases, client, address, now, renewing=state == "renewing"
        )
        if refused is not None:
            return self._nak(request, f"{state}: {address} {refused}", segment.settings)
        own = self.leases.lease_of(client.key)
        if state == "selecting":
            if self.leases.offer_of(client.key, now) is None and (
                own is None or own.address != str(address)
            ):
                # our offer timed out: still fine if the address is free (checked above)
                log.debug("REQUEST for %s from %s without a pending offer", address, client.mac)
        elif state == "init-reboot":
            if own is None:
                self.stats["ignored_unknown"] += 1  # RFC 2131 4.3.2: remain silent
                return None
            if own.address != str(address):
                return self._nak(
                    request, f"init-reboot: {address} is not its address", segment.settings
                )
        return await self._bind(request, client, str(address), now, state, segment)

    async def _bind(
        self,
        request: DhcpRequest,
        client: Client,
        address: str,
        now: float,
        state: str,
        segment: Segment,
    ) -> Reply | None:
        """Grant the lease; the ACK leaves only once the lease is on disk."""
        reservation = segment.pool.reservation(client.mac)
        hostname = reservation.hostname if reservation is not None else ""
        self.leases.bind(client.key, client.mac, address, now + self.lease_time, hostname)
        try:
            await self.leases.save()
        except OSError as exc:
            self.stats["persist_errors"] += 1
            log.error(
                "lease for %s not written to %s (%s): no ACK sent", address, self.leases.path, exc
            )
            return None
        self.stats["acks"] += 1
        self.records.learn(client.mac, address)
        return self._lease_reply(request, ACK, address, "dhcp-ack", segment, state=state)

    def _nak(self, request: DhcpRequest, reason: str, settings: replies.Settings) -> Reply:
        self.stats["naks"] += 1
        self.records.event(request.mac, "dhcp-nak", reason=reason)
        return replies.nak(settings, request, reason)

    # --- DECLINE, RELEASE, INFORM -----------------------------------------------------

    async def _decline(self, request: DhcpRequest, client: Client) -> None:
        address = client.requested
        if request.server_id not in (None, self.server_ip) or address is None:
            self.stats["ignored"] += 1
            return
        lease = self.leases.lease_at(str(address))
        offer = self.leases.offer_of(client.key, time.time())
        ours = (lease is not None and lease.client == client.key) or (
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

    async def _release(self, request: DhcpRequest, client: Client) -> None:
        if request.server_id not in (None, self.server_ip):
            self.stats["ignored"] += 1
            return
        if not self.leases.end(client.key, request.ciaddr, time.time()):
            self.stats["ignored"] += 1
            return
        self.stats["releases"] += 1
        self.records.event(request.mac, "dhcp-release", ip=request.ciaddr)
        await self._save_quietly()

    def _inform(self, request: DhcpRequest, segment: Segment) -> Reply | None:
        """RFC 2131 3.4: configuration only: no lease, no yiaddr, sent to ciaddr."""
        if request.ciaddr in ("", "0.0.0.0"):
            self.stats["malformed"] += 1
            return None
        self.stats["informs"] += 1
        self.records.learn(request.mac, request.ciaddr)
        return self._lease_reply(request, ACK, "0.0.0.0", "dhcp-inform-ack", segment, lease=False)

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
        segment: Segment,
        *,
        lease: bool = True,
        state: str = "",
    ) -> Reply:
        """OFFER/ACK with the lease options and the boot answer; noted in the record."""
        settings, reservation = segment.settings, segment.pool.reservation(request.mac)
        options = replies.config_options(settings, reservation, lease=lease)
        answer = self.policy.pxe_answer(facts_from_request(request)) if request.is_pxe else None
        reply = replies.lease_reply(settings, request, msg_type, address, options, answer)
        ip = address if lease else request.ciaddr
        detail = {**replies.boot_detail(answer), **relay_details(request)}
        self.records.event(request.mac, event, ip=ip, state=state, **detail)
        return reply
