"""ProxyDHCP (PXE 2.1): boot answers on UDP 67 and 4011, never addresses.

The site's own DHCP server hands out addresses; this one only tells PXE and iPXE clients
what to boot. Every packet is glanced at byte-level first; only PXE DISCOVER/REQUEST/INFORM
are decoded (`endpoint.py`), ordinary ones without scapy and answered from a template per
client kind (`fastpath.py`). Nothing a packet contains can raise out of the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from netboot.boot import BootPolicy, ClientFacts, NoAnswer, PxeAnswer
from netboot.boot.api import ANSWER_DEADLINE, ApiRefusal
from netboot.datagram import Address
from netboot.dhcp import packet
from netboot.dhcp.endpoint import DhcpEndpoint, Reply, decode, open_dhcp_endpoint
from netboot.dhcp.facts import facts_from_request
from netboot.dhcp.fastpath import LightRequest, Templates, light_request
from netboot.dhcp.packet import ACK, DISCOVER, INFORM, OFFER, REQUEST, DhcpRequest
from netboot.dhcp.prefilter import Glance
from netboot.dhcp.pxe import pxe_options
from netboot.dhcp.relay import OPT_RELAY_AGENT, relay_details
from netboot.dhcp.sockets import reply_address
from netboot.records import ClientRecords

log = logging.getLogger("netboot.dhcp.proxy")
MAX_WAITING = 256  # packets waiting for the boot API at once; more are dropped


class ProxyDhcpServer:
    """Answers PXE clients on port 67 (broadcast) and 4011 (unicast)."""

    def __init__(
        self,
        policy: BootPolicy,
        records: ClientRecords,
        *,
        server_ip: str,
        interface: str = "",
        port: int = 67,
        proxy_port: int = 4011,
        listen_67: bool = True,
        fast_path: bool = True,
    ) -> None:
        self.policy = policy
        self.records = records
        self.server_ip = server_ip
        self.interface = interface
        self.port = port
        self.proxy_port = proxy_port
        self.listen_67 = listen_67  # False: port 4011 only (full DHCP answers 67 itself)
        self.stats: Counter[str] = Counter()
        self._endpoints: list[DhcpEndpoint] = []
        self._endpoint_for: dict[bool, DhcpEndpoint] = {}  # on 4011? -> its endpoint
        self._waiting: set[asyncio.Task[None]] = set()  # packets waiting for the boot API
        self.templates = Templates(self.stats, enabled=fast_path)

    def _ports(self) -> list[tuple[int, bool]]:
        """(port, is it 4011) pairs this server listens on."""
        ports = [(self.port, False)] if self.listen_67 else []
        return [*ports, (self.proxy_port, True)]

    async def start(self) -> None:
        try:
            for port, on_4011 in self._ports():
                endpoint = await open_dhcp_endpoint(
                    port,
                    self.interface,
                    self.stats,
                    log,
                    _wanted,
                    lambda request, addr, on=on_4011: self._answer(request, addr, on),
                    self._light,
                )
                self._endpoints.append(endpoint)
                self._endpoint_for[on_4011] = endpoint
        except BaseException:
            await self.close()
            raise
        log.info(
            "proxyDHCP on %s port %s (interface %s)",
            self.server_ip,
            " and ".join(str(port) for port, _ in self._ports()),
            self.interface or "any",
        )

    async def close(self) -> None:
        for task in list(self._waiting):
            task.cancel()
        for endpoint in self._endpoints:
            endpoint.close()
        self._endpoints.clear()
        self._endpoint_for.clear()

    def handle(self, data: bytes, addr: Address, on_4011: bool) -> Reply | None:
        """Decide on one datagram: the reply and where to send it, or None (what an
        endpoint does per packet, without a socket: for benchmarks)."""
        request = decode(data, addr, self.stats, _wanted, log, self._light)
        return None if request is None else self._answer(request, addr, on_4011)

    def _light(self, data: bytes) -> LightRequest | None:
        """The request read without scapy, when the template cache may answer it."""
        request = light_request(data)
        if request is None or not self.templates.usable(request, self.policy):
            return None
        return request

    def _answer(self, request: DhcpRequest, addr: Address, on_4011: bool) -> Reply | None:
        mac = request.mac
        if request.msg_type in (REQUEST, INFORM):
            self.records.learn(mac, request.requested_ip or request.ciaddr)
            if not on_4011 and request.server_id not in (None, self.server_ip):
                # a REQUEST to the site's DHCP server: not ours to answer
                self.stats["ignored"] += 1
                return None
        if on_4011 and request.msg_type == DISCOVER:
            self.stats["ignored"] += 1
            return None
        facts = facts_from_request(request)
        if self.policy.needs_api(facts):
            self._answer_later(request, addr, on_4011, facts)
            return None
        reply_type = OFFER if request.msg_type == DISCOVER else ACK
        answer, payload = self._decide(request, facts, reply_type)
        if isinstance(answer, NoAnswer):
            self.stats["no_answer"] += 1
            self.records.event(mac, "dhcp-no-answer", arch=request.arch, reason=answer.reason)
            return None
        kind = "dhcp-offer" if reply_type == OFFER and not on_4011 else "proxy-ack"
        self.stats["offers" if reply_type == OFFER else "acks"] += 1
        self.records.event(
            mac,
            kind,
            ip=request.ciaddr if request.ciaddr != "0.0.0.0" else None,
            arch=answer.arch,
            firmware=answer.firmware,
            ipxe=answer.ipxe,
            boot_file=answer.boot_file,
            port=self.proxy_port if on_4011 else self.port,
            hostname=request.hostname,
            **relay_details(request),
        )
        destination = addr if on_4011 else reply_address(request)
        return payload, destination

    def _decide(
        self, request: DhcpRequest, facts: ClientFacts, reply_type: int
    ) -> tuple[PxeAnswer | NoAnswer, bytes]:
        """The policy's answer and the reply bytes: from the template of this client's kind
        when there is one, else worked out and encoded (and kept as the kind's template)."""
        light = isinstance(request, LightRequest)
        template = self.templates.get(request, self.policy) if light else None
        if template is not None:
            self.stats["fastpath_hits"] += 1
            payload = template.reply_for(request) if template.payload else b""
            return template.answer, payload
        answer = self.policy.pxe_answer(facts)
        payload = b""
        if isinstance(answer, PxeAnswer):
            payload = _encode(request, reply_type, answer, self.server_ip)
        if light:
            self.templates.put(request, answer, payload)
        return answer, payload

    def _answer_later(
        self, request: DhcpRequest, addr: Address, on_4011: bool, facts: ClientFacts
    ) -> None:
        """API mode, machine not known yet: ask the API off this path and answer the packet
        if the result comes within ANSWER_DEADLINE (later results serve the next retry)."""
        if len(self._waiting) >= MAX_WAITING:
            self.stats["api_busy"] += 1
            return
        task = asyncio.get_running_loop().create_task(
            self._answer_from_api(request, addr, on_4011, facts)
        )
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _answer_from_api(
        self, request: DhcpRequest, addr: Address, on_4011: bool, facts: ClientFacts
    ) -> None:
        try:
            result = await asyncio.wait_for(self.policy.ask_api(facts), ANSWER_DEADLINE)
        except TimeoutError:
            self.stats["api_late"] += 1
            return
        refused = result.reason if isinstance(result, ApiRefusal) else None
        self.records.event(request.mac, "boot-api", ours=refused is None, reason=refused)
        reply = self._answer(request, addr, on_4011)
        endpoint = self._endpoint_for.get(on_4011)
        if reply is not None and endpoint is not None:
            endpoint.send(*reply)


def _encode(request: DhcpRequest, reply_type: int, answer: PxeAnswer, server_ip: str) -> bytes:
    """The full path's reply: scapy encodes it (a template is a copy of one)."""
    return packet.build_reply(
        request,
        reply_type,
        server_ip=server_ip,
        # next-server is us for HTTP answers too: some iPXE builds only count a proxy
        # answer as a boot answer with siaddr set
        siaddr=server_ip,
        boot_file=answer.boot_file,
        options=_with_agent_option(request, pxe_options(request, answer)),
    )


def _with_agent_option(request: DhcpRequest, options: list) -> list:
    """RFC 3046 2.2: a reply to a relayed request echoes the relay agent's option 82."""
    agent = request.options.get(OPT_RELAY_AGENT)
    if request.giaddr in ("", "0.0.0.0") or not isinstance(agent, bytes):
        return options
    return [*options, (OPT_RELAY_AGENT, agent)]


def _wanted(seen: Glance) -> bool:
    """Only PXE and iPXE clients asking for something are worth a decode."""
    return seen.is_pxe and seen.msg_type in (DISCOVER, REQUEST, INFORM)
