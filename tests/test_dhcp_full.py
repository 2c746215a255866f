"""Full DHCP, packet by packet: hand-made requests from a client namespace, real sockets.

Each test states one RFC 2131 rule and checks the server's real answer (or its silence).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from netboot.boot import BootPolicy
from netboot.dhcp import full
from netboot.dhcp.packet import ACK, NAK, OFFER, parse_reply
from netboot.dhcp.sockets import open_udp_socket
from testbed.bridge_lan import SERVER_IP, BridgeLan
from testbed.dhcp_clients import client_socket, exchange
from testbed.full_dhcp import full_config, serving
from testbed.poll import until

pytestmark = pytest.mark.netns  # each test on its own `bridge_lan`


def request_packet(
    mac: str,
    msg_type: str,
    *,
    xid: int | None = None,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    options: list[Any] | None = None,
) -> tuple[bytes, int]:
    xid = xid if xid is not None else int.from_bytes(os.urandom(4), "big")
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    packet = BOOTP(
        op=1, htype=1, hlen=6, xid=xid, flags=0x8000, ciaddr=ciaddr, giaddr=giaddr, chaddr=chaddr
    ) / DHCP(options=[("message-type", msg_type), *(options or []), "end"])
    data = bytes(packet)
    return data + bytes(max(0, 300 - len(data))), xid


def decode(data: bytes) -> tuple[BOOTP, dict[int, Any]]:
    return parse_reply(data)


async def discover_and_request(sock: Any, mac: str, extra: list[Any] | None = None) -> str:
    """The whole DORA exchange; returns the bound address."""
    payload, xid = request_packet(mac, "discover", options=extra)
    offers = await exchange(sock, payload, xid)
    bootp, options = decode(offers[0])
    assert options[53] == OFFER
    payload, xid = request_packet(
        mac,
        "request",
        xid=xid,
        options=[("server_id", SERVER_IP), ("requested_addr", bootp.yiaddr), *(extra or [])],
    )
    acks = await exchange(sock, payload, xid)
    assert len(acks) == 1 and decode(acks[0])[1][53] == ACK
    return bootp.yiaddr


async def test_pxe_discover_gets_address_and_boot_file(
    bridge_lan: BridgeLan, tmp_path: Path
) -> None:
    client = bridge_lan.client("pxe")
    config = full_config(
        tmp_path,
        "10.99.0.50",
        "10.99.0.59",
        router="10.99.0.254",
        dns=["10.99.0.53"],
        domain="lab",
    )
    async with serving(bridge_lan, config) as server:
        sock = client_socket(client)
        pxe = [
            ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003016"),
            ("pxe_client_architecture", b"\x00\x07"),
            ("pxe_client_machine_identifier", b"\x00" + bytes(range(16))),
        ]
        payload, xid = request_packet(client.mac, "discover", options=pxe)
        offers = await exchange(sock, payload, xid, linger=0.5)
        assert len(offers) == 1, offers
        bootp, options = decode(offers[0])
        assert options[53] == OFFER and options[54] == SERVER_IP
        assert bootp.yiaddr == "10.99.0.50"
        assert bootp.siaddr == SERVER_IP
        assert bootp.file.rstrip(b"\0") == b"ipxe/snponly.efi"
        assert options[60] == b"PXEClient"
        assert options[1] == "255.255.255.0" and options[3] == "10.99.0.254"
        assert options[6] == "10.99.0.53" and options[15] == b"lab"
        assert options[28] == "10.99.0.255"
        assert (options[51], options[58], options[59]) == (3600, 1800, 3150)

        payload, xid = request_packet(
            client.mac,
            "request",
            xid=xid,
            options=[*pxe, ("server_id", SERVER_IP), ("requested_addr", bootp.yiaddr)],
        )
        acks = await exchange(sock, payload, xid)
        assert len(acks) == 1
        ack, ack_options = decode(acks[0])
        assert ack_options[53] == ACK and ack.yiaddr == "10.99.0.50"
        assert ack.file.rstrip(b"\0") == b"ipxe/snponly.efi"
        sock.close()
        assert server.stats["offers"] == 1 and server.stats["acks"] == 1
    saved = json.loads((tmp_path / "leases.json").read_text())
    assert [(x["mac"], x["address"]) for x in saved["leases"]] == [(client.mac, "10.99.0.50")]


async def test_two_clients_never_share_and_offers_are_held(
    bridge_lan: BridgeLan, tmp_path: Path
) -> None:
    one, two = bridge_lan.client("one"), bridge_lan.client("two")
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.51")
    async with serving(bridge_lan, config):
        sock_one, sock_two = client_socket(one), client_socket(two)
        # both DISCOVER before either REQUESTs: the first offer is held, so no overlap
        p1, x1 = request_packet(one.mac, "discover")
        p2, x2 = request_packet(two.mac, "discover")
        offer_one = decode((await exchange(sock_one, p1, x1))[0])[0].yiaddr
        offer_two = decode((await exchange(sock_two, p2, x2))[0])[0].yiaddr
        assert {offer_one, offer_two} == {"10.99.0.50", "10.99.0.51"}
        # a third client finds the pool of two taken by held offers: no answer
        three = bridge_lan.client("three")
        sock_three = client_socket(three)
        p3, x3 = request_packet(three.mac, "discover")
        assert await exchange(sock_three, p3, x3, wait=1.0) == []
        # client one takes another server's offer: its held address is freed for three
        p1, x1 = request_packet(
            one.mac,
            "request",
            options=[("server_id", "10.99.0.200"), ("requested_addr", "10.99.0.77")],
        )
        assert await exchange(sock_one, p1, x1, wait=0.5) == []
        p3, x3 = request_packet(three.mac, "discover")
        replies = await exchange(sock_three, p3, x3)
        assert decode(replies[0])[0].yiaddr == offer_one
        for sock in (sock_one, sock_two, sock_three):
            sock.close()


async def test_request_states(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    client, other = bridge_lan.client("c"), bridge_lan.client("o")
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.59")
    async with serving(bridge_lan, config) as server:
        sock, sock_other = client_socket(client), client_socket(other)
        address = await discover_and_request(sock, client.mac)

        # init-reboot with its own address: ACK; with another: NAK
        payload, xid = request_packet(client.mac, "request", options=[("requested_addr", address)])
        assert decode((await exchange(sock, payload, xid))[0])[1][53] == ACK
        payload, xid = request_packet(
            client.mac, "request", options=[("requested_addr", "10.99.0.58")]
        )
        assert decode((await exchange(sock, payload, xid))[0])[1][53] == NAK
        # init-reboot on a wrong subnet: NAK
        payload, xid = request_packet(
            client.mac, "request", options=[("requested_addr", "192.168.5.5")]
        )
        assert decode((await exchange(sock, payload, xid))[0])[1][53] == NAK
        # init-reboot from a client we never saw: silence (RFC 2131 4.3.2)
        payload, xid = request_packet(
            other.mac, "request", options=[("requested_addr", "10.99.0.57")]
        )
        assert await exchange(sock_other, payload, xid, wait=0.7) == []
        # ...and asking for somebody else's address: NAK
        payload, xid = request_packet(other.mac, "request", options=[("requested_addr", address)])
        assert decode((await exchange(sock_other, payload, xid))[0])[1][53] == NAK
        # rebinding (broadcast, ciaddr): ACK for the owner, NAK for anyone else
        payload, xid = request_packet(client.mac, "request", ciaddr=address)
        bootp, options = decode((await exchange(sock, payload, xid))[0])
        assert options[53] == ACK and bootp.yiaddr == address and options[51] == 3600
        payload, xid = request_packet(other.mac, "request", ciaddr=address)
        assert decode((await exchange(sock_other, payload, xid))[0])[1][53] == NAK

        # INFORM: configuration, no address, no lease time
        payload, xid = request_packet(client.mac, "inform", ciaddr=address)
        bootp, options = decode((await exchange(sock, payload, xid))[0])
        assert options[53] == ACK and bootp.yiaddr == "0.0.0.0"
        assert 51 not in options and options[1] == "255.255.255.0"

        # RELEASE: the address is free for others, but the client gets it back first
        payload, _ = request_packet(
            client.mac, "release", ciaddr=address, options=[("server_id", SERVER_IP)]
        )
        await asyncio.get_running_loop().sock_sendto(sock, payload, ("255.255.255.255", 67))
        assert await until(lambda: server.stats["releases"] == 1), server.stats
        assert await discover_and_request(sock, client.mac) == address
        sock.close()
        sock_other.close()


async def test_decline_blocks_the_address(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    client = bridge_lan.client("c")
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.59", decline_time=300)
    async with serving(bridge_lan, config) as server:
        sock = client_socket(client)
        address = await discover_and_request(sock, client.mac)
        payload, _ = request_packet(
            client.mac, "decline", options=[("server_id", SERVER_IP), ("requested_addr", address)]
        )
        await asyncio.get_running_loop().sock_sendto(sock, payload, ("255.255.255.255", 67))
        assert await until(lambda: server.stats["declines"] == 1), server.stats
        second = await discover_and_request(sock, client.mac)
        assert second != address
        sock.close()
        saved = json.loads((tmp_path / "leases.json").read_text())
        assert [b["address"] for b in saved["blocked"]] == [address]
        assert [x["address"] for x in saved["leases"]] == [second]
        # the machine that does use the declined address renews it: ACK, block lifted
        user = bridge_lan.client("user")
        sock = client_socket(user)
        payload, xid = request_packet(user.mac, "request", ciaddr=address)
        bootp, options = decode((await exchange(sock, payload, xid))[0])
        assert options[53] == ACK and bootp.yiaddr == address
        assert server.leases.blocked(address, 0) is None
        sock.close()


async def test_reservation_wins_and_is_never_given_away(
    bridge_lan: BridgeLan, tmp_path: Path
) -> None:
    owner, stranger = bridge_lan.client("owner"), bridge_lan.client("stranger")
    reserved = {owner.mac: {"address": "10.99.0.50", "hostname": "pc01"}}
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.51", reservations=reserved)
    async with serving(bridge_lan, config):
        sock_owner, sock_stranger = client_socket(owner), client_socket(stranger)
        # the stranger asks for the reserved address: it gets the other one
        payload, xid = request_packet(
            stranger.mac, "discover", options=[("requested_addr", "10.99.0.50")]
        )
        bootp, _ = decode((await exchange(sock_stranger, payload, xid))[0])
        assert bootp.yiaddr == "10.99.0.51"
        payload, xid = request_packet(stranger.mac, "request", ciaddr="10.99.0.50")
        assert decode((await exchange(sock_stranger, payload, xid))[0])[1][53] == NAK
        payload, xid = request_packet(owner.mac, "discover")
        bootp, options = decode((await exchange(sock_owner, payload, xid))[0])
        assert bootp.yiaddr == "10.99.0.50" and options[12] == b"pc01"
        sock_owner.close()
        sock_stranger.close()


async def test_relay_answers_only_for_the_local_subnet(
    bridge_lan: BridgeLan, tmp_path: Path
) -> None:
    relay = bridge_lan.client("relay")
    # the relay agent: an address on the LAN, listening on the server port 67
    ns, interface = relay.ns, relay.interface
    ns.ip("addr", "add", "10.99.0.9/24", "dev", interface)
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.59")
    async with serving(bridge_lan, config) as server:
        with ns.entered():
            sock = open_udp_socket(67, interface)
        loop = asyncio.get_running_loop()
        payload, xid = request_packet("52:54:00:aa:bb:01", "discover", giaddr="10.99.0.9")
        await loop.sock_sendto(sock, payload, (SERVER_IP, 67))
        data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), 2)
        bootp, options = decode(data)
        assert source == (SERVER_IP, 67) and options[53] == OFFER
        assert bootp.xid == xid and bootp.giaddr == "10.99.0.9"
        assert bootp.yiaddr == "10.99.0.50"
        payload, _ = request_packet("52:54:00:aa:bb:02", "discover", giaddr="172.16.0.1")
        await loop.sock_sendto(sock, payload, (SERVER_IP, 67))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), 0.7)
        assert server.stats["ignored_relay"] == 1
        sock.close()


async def test_malformed_packets_are_counted_and_survived(
    bridge_lan: BridgeLan, tmp_path: Path
) -> None:
    client = bridge_lan.client("c")
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.59")
    async with serving(bridge_lan, config) as server:
        sock = client_socket(client)
        loop = asyncio.get_running_loop()
        good, _ = request_packet(client.mac, "discover")
        junk = [
            b"\x01" + os.urandom(50),  # too short
            good[:240] + b"\x35\x01\x01\x3d\xff\x01",  # option 61 runs past the end
            good[:2] + b"\x20" + good[3:],  # hlen 32
            good[:240] + b"\x35\x01\x01\x32\x03\x01\x02\x03\xff",  # option 50 of 3 bytes
        ]
        for data in junk:
            await loop.sock_sendto(sock, data, ("255.255.255.255", 67))
        assert await until(lambda: server.stats["received"] == len(junk)), server.stats
        assert server.stats["malformed"] >= 3 and server.stats["errors"] == 0, server.stats
        assert await discover_and_request(sock, client.mac) == "10.99.0.50"
        sock.close()


# -- hostile load (issue 12) ----------------------------------------------------------

FLOOD = 50


def made_up_mac(i: int) -> str:
    return f"02:66:00:00:{i // 256:02x}:{i % 256:02x}"


async def test_flood_of_bare_discovers_neither_locks_the_pool_nor_floods_the_log(
    bridge_lan: BridgeLan,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bare DISCOVERs from made-up MACs no longer lock a pool for 60 s (OFFER_HOLD_SECONDS),
    and its exhaustion is one log line, not one per packet."""
    monkeypatch.setattr(full, "OFFER_MIN_HOLD_SECONDS", 0.5)  # 3 s in production
    caplog.set_level(logging.INFO, logger="netboot.dhcp.full")
    flooder, real = bridge_lan.client("flooder"), bridge_lan.client("real")
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.51")
    async with serving(bridge_lan, config) as server:
        sock = client_socket(flooder)
        loop = asyncio.get_running_loop()
        for i in range(FLOOD):  # DISCOVER and never REQUEST, each from a new MAC
            payload, _ = request_packet(made_up_mac(i), "discover")
            await loop.sock_sendto(sock, payload, ("255.255.255.255", 67))

        def all_answered() -> bool:
            return server.stats["offers"] + server.stats["no_address"] >= FLOOD

        assert await until(all_answered, within=30), server.stats
        assert server.stats["offers"] >= 2 and server.stats["no_address"] >= 1
        exhausted = [r for r in caplog.records if "no address available" in r.getMessage()]
        assert len(exhausted) == 1  # not one per packet
        await asyncio.sleep(0.6)  # the held offers are past their minimum hold
        real_sock = client_socket(real)
        payload, xid = request_packet(real.mac, "discover")
        replies = await exchange(real_sock, payload, xid)
        assert replies, "a real client was locked out by offers nobody requested"
        bootp, options = parse_reply(replies[0])
        assert options[53] == OFFER and bootp.yiaddr in ("10.99.0.50", "10.99.0.51")
        assert server.stats["offers_reclaimed"] >= 1
        for s in (sock, real_sock):
            s.close()


async def test_a_reloaded_policy_reaches_port_4011(bridge_lan: BridgeLan, tmp_path: Path) -> None:
    """SIGHUP swaps the full server's policy; the proxy inside it, which answers port 4011,
    must answer from the new one too (it kept the old config before)."""
    client = bridge_lan.client("reload")
    client.ns.ip("addr", "add", "10.99.0.77/24", "dev", "eth0")
    config = full_config(tmp_path, "10.99.0.50", "10.99.0.59")
    ipxe = [
        ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003016"),
        ("pxe_client_architecture", b"\x00\x07"),
        ("user_class", b"iPXE"),
    ]

    async def boot_file_on_4011(sock: Any) -> bytes:
        """Unicast to port 4011 as firmware does once it has an address."""
        payload, xid = request_packet(client.mac, "request", options=ipxe)
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(sock, payload, (SERVER_IP, 4011))
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), 5)
        assert int.from_bytes(data[4:8], "big") == xid
        return decode(data)[0].file.rstrip(b"\0")

    async with serving(bridge_lan, config) as server:
        sock = client_socket(client)
        assert await boot_file_on_4011(sock) == b"http://10.99.0.1:8080/boot.ipxe"
        server.policy = BootPolicy(config, SERVER_IP, 9090)
        assert await boot_file_on_4011(sock) == b"http://10.99.0.1:9090/boot.ipxe"
        sock.close()
