"""`netboot doctor` against deliberately broken sites in network namespaces: a dnsmasq that
answers PXE, a port taken, an interface without IPv4, an image without its kernel, a squashfs
that does not match its manifest; and a healthy site, which must exit 0."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netboot import config as cfg
from netboot import layout
from netboot.dhcp.detect import Offer
from netboot.doctor import PROBLEM, network, ports
from netboot.image.manifest import Manifest
from netboot.server import prepare_root
from testbed.cli import NETBOOT
from testbed.netns import Namespace, new_tag, veth

SERVER_IP = "10.234.0.1"
DNSMASQ_IP = "10.234.0.2"


def publish(root: Path, name: str, *, squashfs: bytes = b"squash" * 1000) -> Path:
    """A published version made by hand, with a correct manifest; its directory."""
    version = layout.version_dir(root, name, "20260101-000000")
    version.mkdir(parents=True)
    (version / layout.KERNEL).write_bytes(b"kernel")
    (version / layout.INITRD).write_bytes(b"initrd")
    (version / layout.SQUASHFS).write_bytes(squashfs)
    sha = hashlib.sha256(squashfs).hexdigest()
    Manifest(name, version.name, size=len(squashfs), sha256=sha).write(version)
    os.symlink(f"{layout.VERSIONS}/{version.name}", layout.image_dir(root, name) / layout.CURRENT)
    return version


@dataclass
class Site:
    server: Namespace
    peer: Namespace
    root: Path
    tmp: Path

    def doctor(self, *args: str) -> subprocess.CompletedProcess:
        return self.server.run(
            *NETBOOT, "doctor", "--interface", "eth0", "--root", str(self.root), *args,
            check=False, timeout=120,
        )  # fmt: skip

    def dnsmasq(self, *flags: str) -> subprocess.Popen:
        return self.peer.popen(
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
            "--user=root", "--interface=eth0", "--bind-interfaces", "--no-ping",
            "--dhcp-range=10.234.0.100,10.234.0.150,1h",
            f"--dhcp-leasefile={self.tmp / 'dnsmasq.leases'}",
            f"--pid-file={self.tmp / 'dnsmasq.pid'}", *flags,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    tag = new_tag()
    server, peer = Namespace("srv", tag), Namespace("dhcp", tag)
    root = tmp_path / "root"
    prepare_root(cfg.defaults().with_values({"server.root": str(root)}))
    publish(root, "good")
    (root / layout.ADDON_INITRD).write_bytes(b"addon")
    try:
        veth(server, "eth0", peer, "eth0")
        server.up("eth0", f"{SERVER_IP}/24")
        peer.up("eth0", f"{DNSMASQ_IP}/24")
        yield Site(server, peer, root, tmp_path)
    finally:
        peer.close()
        server.close()


def problems(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(PROBLEM)]


@pytest.mark.netns
def test_healthy_site_exits_zero(site: Site) -> None:
    dnsmasq = site.dnsmasq()
    try:
        result = site.doctor()
    finally:
        dnsmasq.kill()
        dnsmasq.wait()
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems(result) == []
    assert f"ok       DHCP server {DNSMASQ_IP} gives addresses" in result.stdout
    assert "ok       image good version 20260101-000000 is complete" in result.stdout
    assert result.stdout.splitlines()[-1] == "netboot doctor: all well"


@pytest.mark.netns
def test_dnsmasq_answering_pxe_is_a_problem(site: Site) -> None:
    dnsmasq = site.dnsmasq("--dhcp-boot=pxelinux.0")
    try:
        result = site.doctor()
    finally:
        dnsmasq.kill()
        dnsmasq.wait()
    assert result.returncode == 1
    (line,) = problems(result)
    assert f"{DNSMASQ_IP} already answers PXE clients (boot file 'pxelinux.0')" in line
    assert "turn PXE off" in line


@pytest.mark.netns
def test_no_dhcp_server_in_proxy_mode_is_a_problem(site: Site) -> None:
    result = site.doctor()
    assert result.returncode == 1
    (line,) = problems(result)
    assert "no DHCP server gives addresses on eth0: proxy mode needs one" in line


@pytest.mark.netns
def test_port_taken_and_broken_images(site: Site) -> None:
    squatter = site.server.popen(
        sys.executable, "-c",
        "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.bind(('0.0.0.0', 69)); print('bound', flush=True); time.sleep(120)",
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    no_kernel = publish(site.root, "nokernel")
    (no_kernel / layout.KERNEL).unlink()
    bad_sum = publish(site.root, "badsum")
    squashfs = bad_sum / layout.SQUASHFS
    squashfs.write_bytes(squashfs.read_bytes()[::-1])  # same size, other bytes
    try:
        assert squatter.stdout.readline() == "bound\n"
        result = site.doctor("--no-dhcp")
    finally:
        squatter.kill()
        squatter.wait()
    assert result.returncode == 1
    found = problems(result)
    assert len(found) == 3, result.stdout
    assert "TFTP port 69/udp is taken by" in found[0] and f"(pid {squatter.pid})" in found[0]
    assert "image badsum version 20260101-000000 does not boot" in found[1]
    assert "root.squashfs sha256 differs from the manifest's" in found[1]
    assert "image nokernel version 20260101-000000 does not boot: vmlinuz missing" in found[2]
    assert "ok       image good version" in result.stdout


@pytest.mark.netns
def test_interface_without_ipv4(site: Site) -> None:
    site.server.ip("addr", "flush", "dev", "eth0")
    result = site.doctor()
    assert result.returncode == 1
    (line,) = problems(result)
    assert line.startswith("PROBLEM  interface eth0 has no IPv4 address: give eth0 an IPv4")


# --- pure parts --------------------------------------------------------------------------------


def test_firewall_drops_are_found_in_nft_and_iptables_rules() -> None:
    nft = """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    udp dport { 53, 67, 69 } drop
    tcp dport 80 reject with tcp reset
    tcp dport 22 accept
  }
}"""
    iptables = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 4011 -j DROP
-A INPUT -p udp -m multiport --dports 60:70 -j REJECT
-A INPUT -p tcp --dport 80 -j ACCEPT
COMMIT"""
    wanted = {67, 69, 80, 4011}
    assert [port for port, _ in ports.dropped_ports(nft, wanted)] == [67, 69, 80]
    assert [port for port, _ in ports.dropped_ports(iptables, wanted)] == [4011, 67, 69]


def test_judge_offers() -> None:
    config = cfg.defaults()
    router = Offer("10.0.0.1", "10.0.0.50", "", False)
    other_pxe = Offer("10.0.0.9", "0.0.0.0", "pxelinux.0", True)
    own = Offer("10.0.0.2", "0.0.0.0", "ipxe/undionly.kpxe", True)
    found = network.judge(config, {"10.0.0.2"}, "eth0", [router], [router, other_pxe, own])
    assert [f.level for f in found] == ["ok", PROBLEM]
    assert found[1].text.startswith("10.0.0.9 already answers PXE clients")
    full = config.with_values({"server.dhcp": "full"})
    found = network.judge(full, {"10.0.0.2"}, "eth0", [router], [router])
    assert found[0].level == PROBLEM and "two servers fight" in found[0].text
