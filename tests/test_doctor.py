"""`netboot doctor` against deliberately broken sites in network namespaces: a dnsmasq that
answers PXE, a port taken, an interface without IPv4, an image without its kernel, a squashfs
that does not match its manifest, the GRUB loader without shim or with the site's next-server
elsewhere, nft rules dropping TFTP and proxyDHCP; and a healthy site, which must exit 0."""

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
from netboot.boot import grub
from netboot.dhcp.detect import Offer
from netboot.doctor import PROBLEM, network, ports, secure_boot
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

    def doctor_beside_dnsmasq(
        self, dnsmasq_flags: tuple[str, ...] = (), *args: str
    ) -> subprocess.CompletedProcess:
        """`doctor(*args)` while a dnsmasq with these flags serves the segment."""
        dnsmasq = self.dnsmasq(*dnsmasq_flags)
        try:
            return self.doctor(*args)
        finally:
            dnsmasq.kill()
            dnsmasq.wait()

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
    result = site.doctor_beside_dnsmasq(())
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems(result) == []
    assert f"ok       DHCP server {DNSMASQ_IP} gives addresses" in result.stdout
    assert "ok       image good version 20260101-000000 is complete" in result.stdout
    assert result.stdout.splitlines()[-1] == "netboot doctor: all well"


@pytest.mark.netns
def test_dnsmasq_answering_pxe_is_a_problem(site: Site) -> None:
    result = site.doctor_beside_dnsmasq(("--dhcp-boot=pxelinux.0",))
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


# --- Secure Boot chain (loader = "grub") and firewall rules in the namespace ------------------


def grub_config(tmp: Path, sources: Path) -> Path:
    """A config file with the GRUB loader whose `[grub]` sources are under `sources`."""
    path = tmp / "netboot.toml"
    path.write_text(
        '[boot]\nloader = "grub"\n[grub]\n'
        + "".join(f'{key} = "{sources / key}"\n' for key in ("shim_x64", "grub_x64"))
    )
    return path


@pytest.mark.netns
def test_grub_loader_without_shim_and_next_server(site: Site) -> None:
    config = grub_config(site.tmp, site.tmp / "absent")
    # dnsmasq gives addresses with itself as next-server
    result = site.doctor_beside_dnsmasq((), "--config", str(config))
    assert result.returncode == 1
    found = problems(result)
    assert len(found) == 2, result.stdout
    assert found[0].startswith(
        f"PROBLEM  loader grub with dhcp proxy: DHCP server {DNSMASQ_IP} gives next-server "
        f"{DNSMASQ_IP}, not {SERVER_IP}: GRUB clients stop at a grub> prompt: set next-server on "
        f"the site's DHCP server to {SERVER_IP} (dnsmasq: dhcp-boot=,,{SERVER_IP}; "
    )
    assert found[0].endswith("or run netboot with --dhcp full (docs/secure-boot.md)")
    assert found[1].startswith("PROBLEM  loader grub: no signed shim and GRUB for efi-x64")
    assert f"{site.root}/efi/x64/shimx64.efi" in found[1]
    assert found[1].endswith(
        ": apt-get install shim-signed grub-efi-amd64-signed (or point [grub] shim_x64 and "
        "grub_x64 at signed files)"
    )


@pytest.mark.netns
def test_grub_loader_with_shim_and_next_server(site: Site) -> None:
    sources = site.tmp / "signed"
    sources.mkdir()
    for key in ("shim_x64", "grub_x64"):
        (sources / key).write_bytes(b"signed " + key.encode())
    config = grub_config(site.tmp, sources)
    result = site.doctor_beside_dnsmasq((f"--dhcp-boot=,,{SERVER_IP}",), "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"ok       DHCP server {DNSMASQ_IP} gives next-server {SERVER_IP}: GRUB finds its menu"
        in result.stdout
    )
    assert (
        "ok       efi-x64 Secure Boot clients get efi/x64/shimx64.efi and efi/x64/grubx64.efi "
        "(serve copies them from [grub] shim_x64, grub_x64)" in result.stdout
    )


def test_shim_and_grub_sources_or_placed_in_the_served_root(tmp_path: Path) -> None:
    """Sources that serve will copy, or the copies prepare_root placed, are enough; with
    neither, x64 is a problem (with the packages to install) and arm64 a note."""
    sources = tmp_path / "signed"
    sources.mkdir()
    keys = ("shim_x64", "grub_x64")
    for key in keys:
        (sources / key).write_bytes(key.encode())
    root = tmp_path / "root"
    values = {f"grub.{key}": str(sources / key) for key in keys}
    config = cfg.defaults().with_values({"server.root": str(root), "boot.loader": "grub", **values})
    x64, arm64 = secure_boot.shim_findings(config)
    assert (x64.level, arm64.level) == ("ok", "note"), (x64, arm64)
    assert x64.text.endswith("(serve copies them from [grub] shim_x64, grub_x64)")
    assert "shim-signed:arm64" in arm64.fix
    prepare_root(config)
    for key in keys:  # only the copies serve placed remain
        (sources / key).unlink()
    x64, _ = secure_boot.shim_findings(config)
    assert x64.level == "ok" and x64.text.endswith(f"(in {root})"), x64
    (root / grub.X64.grub_path).unlink()
    x64, _ = secure_boot.shim_findings(config)
    assert x64.level == PROBLEM, x64
    assert f"{root / grub.X64.grub_path}, {sources / 'shim_x64'}" in x64.text
    assert x64.fix.startswith("apt-get install shim-signed grub-efi-amd64-signed")
    assert secure_boot.shim_findings(config.with_values({"boot.loader": "ipxe"})) == []


def test_next_server_judged_from_the_site_offers() -> None:
    config = cfg.defaults().with_values({"boot.loader": "grub"})
    right = Offer("10.0.0.1", "10.0.0.50", "", False, next_server="10.0.0.2")
    wrong = Offer("10.0.0.1", "10.0.0.50", "", False)
    found = network.judge(config, {"10.0.0.2"}, "eth0", [right], [right])
    assert found[-1].level == "ok" and "gives next-server 10.0.0.2" in found[-1].text
    found = network.judge(config, {"10.0.0.2"}, "eth0", [wrong], [wrong])
    assert found[-1].level == PROBLEM and "next-server 0.0.0.0, not 10.0.0.2" in found[-1].text
    full = config.with_values({"server.dhcp": "full"})
    assert not any("next-server" in f.text for f in network.judge(full, set(), "eth0", [], []))


@pytest.mark.netns
def test_nft_rules_in_the_namespace_dropping_tftp_and_proxy_dhcp(site: Site) -> None:
    """Real nft rules in the server's namespace (the host's ruleset is untouched): doctor,
    run there with `ip netns exec`, reads that namespace's ruleset."""
    table = "inet nbtest"
    site.server.run("nft", "add", "table", *table.split())
    site.server.run(
        "nft", "add", "chain", *table.split(), "input",
        "{ type filter hook input priority 0; policy accept; }",
    )  # fmt: skip
    site.server.run("nft", "add", "rule", *table.split(), "input", "udp", "dport", "69", "drop")
    site.server.run(
        "nft", "add", "rule", *table.split(), "input", "udp", "dport", "4011", "counter",
        "reject",
    )  # fmt: skip
    result = site.doctor("--no-dhcp")
    assert result.returncode == 1
    found = problems(result)
    assert found == [
        "PROBLEM  firewall (nft) drops port 69: udp dport 69 drop: allow it from the LAN",
        "PROBLEM  firewall (nft) drops port 4011: udp dport 4011 counter packets 0 bytes 0 "
        "reject: allow it from the LAN",
    ], result.stdout
