"""PXE clients on another segment reach netboot through a DHCP relay agent (isc-dhcp-relay's
`dhcrelay` in a router namespace): proxy answers go back to the relay (RFC 2131 4.1: giaddr,
port 67), and port 4011 works across the router.

    client ns (vcli 10.233.2.50) -- router ns (dhcrelay, forwarding) -- server ns (netboot)
        10.233.2.0/24           rdown .2.254   rup .1.254          vsrv 10.233.1.1
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_proxy_dhcp import discover, exchange

from netboot.dhcp.relay import agent_suboptions
from testbed.lan import CLIENT_IF, SERVER_IF, Lan
from testbed.netns import Namespace, new_tag, veth
from testbed.relay import DhcpRelay
from testbed.serve import serve_on

SERVER_IP = "10.233.1.1"
RELAY_UP = "10.233.1.254"
RELAY_DOWN = "10.233.2.254"
CLIENT_IP = "10.233.2.50"
MAC = "52:54:00:aa:dd:01"


def test_option_82_suboptions_are_read_and_escaped() -> None:
    raw = b"\x01\x05rdown\x02\x06\x52\x54\x00\x00\x00\x01\x09\x02ab"
    assert agent_suboptions(raw) == {"agent_circuit": "rdown", "agent_remote": "52:54:00:00:00:01"}
    assert agent_suboptions(b"\x01\x09short") == {}  # truncated: ignored
    assert agent_suboptions(b"\x01\x03a\nb") == {"agent_circuit": "61:0a:62"}


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lan, DhcpRelay]]:
    tmp = tmp_path_factory.mktemp("relay")
    tag = new_tag()
    server, router, client = (Namespace(role, tag) for role in ("srv", "rtr", "cli"))
    serve = relay = None
    try:
        veth(server, SERVER_IF, router, "rup")
        veth(router, "rdown", client, CLIENT_IF)
        server.up(SERVER_IF, f"{SERVER_IP}/24")
        router.up("rup", f"{RELAY_UP}/24")
        router.up("rdown", f"{RELAY_DOWN}/24")
        client.up(CLIENT_IF)  # no address yet: a PXE ROM before DHCP
        server.ip("route", "add", "10.233.2.0/24", "via", RELAY_UP)
        client.ip("route", "add", "default", "via", RELAY_DOWN, "dev", CLIENT_IF, "onlink")
        relay = DhcpRelay(router, "rup", "rdown", [SERVER_IP], tmp / "dhcrelay.log").start()
        serve = serve_on(server, tmp / "root", SERVER_IP, tmp / "serve.log")
        yield Lan(server, client, serve, tmp / "root"), relay
    finally:
        if serve is not None:
            serve.stop()
        if relay is not None:
            relay.stop()
        for ns in (client, router, server):
            ns.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.netns
def test_pxe_probe_behind_a_relay_gets_its_boot_file(relayed: tuple[Lan, DhcpRelay]) -> None:
    lan, relay = relayed
    answer = exchange(lan, discover(0, mac=MAC), timeout=5)
    assert answer is not None, f"{lan.serve.log()}\n{relay.text()}"
    bootp, options, _ = answer
    assert options[53] == 2  # OFFER, through the relay
    assert bootp.file.rstrip(b"\0") == b"ipxe/undionly.kpxe"
    assert bootp.siaddr == SERVER_IP
    assert bootp.giaddr == RELAY_DOWN
    record = lan.serve.api(f"/api/clients/{MAC}")
    offer = next(e for e in record["events"] if e["kind"] == "dhcp-offer")
    assert offer["relay"] == RELAY_DOWN, offer
    assert offer.get("agent_circuit") == "rdown", offer  # option 82 added by dhcrelay -a


@pytest.mark.netns
def test_port_4011_works_across_the_router(relayed: tuple[Lan, DhcpRelay]) -> None:
    lan, _ = relayed
    lan.client_ns.ip("addr", "add", f"{CLIENT_IP}/24", "dev", CLIENT_IF)
    try:
        request = discover(9, mac=MAC, msg="request", ciaddr=CLIENT_IP)
        answer = exchange(lan, request, port=4011, dest=SERVER_IP, timeout=5)
        assert answer is not None, lan.serve.log()
        bootp, options, _ = answer
        assert options[53] == 5  # ACK
        assert bootp.file.rstrip(b"\0") in (b"ipxe/snponly.efi", b"ipxe/ipxe.efi")
    finally:
        lan.client_ns.ip("addr", "del", f"{CLIENT_IP}/24", "dev", CLIENT_IF)


@pytest.mark.netns
def test_full_dhcp_serves_the_relayed_subnet_from_its_pool(
    relayed: tuple[Lan, DhcpRelay], tmp_path: Path
) -> None:
    lan, _ = relayed
    config = tmp_path / "netboot.toml"
    config.write_text(
        "[dhcp]\n"
        'range_start = "10.233.1.100"\nrange_end = "10.233.1.150"\nforce = true\n'
        f'lease_file = "{tmp_path / "leases.json"}"\n'
        '[dhcp.subnets."10.233.2.0/24"]\n'
        'range_start = "10.233.2.100"\nrange_end = "10.233.2.150"\nrouter = "10.233.2.254"\n'
    )
    mac = "52:54:00:aa:dd:02"
    lan.serve.stop()
    serve = serve_on(lan.server_ns, lan.root, SERVER_IP, tmp_path / "full.log", dhcp="full",
                     config=config)  # fmt: skip
    try:
        answer = exchange(lan, discover(0, mac=mac), timeout=5)
        assert answer is not None, serve.log()
        bootp, options, _ = answer
        assert options[53] == 2
        assert bootp.yiaddr == "10.233.2.100"  # from the relayed subnet's pool
        assert options[3] == "10.233.2.254" and options[1] == "255.255.255.0"
        assert bootp.file.rstrip(b"\0") == b"ipxe/undionly.kpxe"
        offer = next(e for e in serve.api(f"/api/clients/{mac}")["events"]
                     if e["kind"] == "dhcp-offer")  # fmt: skip
        assert offer["relay"] == RELAY_DOWN and offer["agent_circuit"] == "rdown", offer
    finally:
        serve.stop()
        lan.serve.start()


@pytest.mark.netns
def test_the_relay_log_shows_the_forwarded_reply(relayed: tuple[Lan, DhcpRelay]) -> None:
    _, relay = relayed
    assert f"Forwarded BOOTREPLY for {MAC}" in relay.text(), relay.text()
