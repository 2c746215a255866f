"""`netboot serve` as a user runs it: bad config lines, flags over the file, port fallback,
clean stop on SIGTERM, and the defaults it picks by itself."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netboot import config as cfg
from testbed.cli import NETBOOT, run_netboot
from testbed.netns import Namespace, new_tag, veth
from testbed.serve import ServeProcess

SERVER_IP = "10.232.0.1"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\nhttp_prot = 8080\n", "server.http_prot: unknown key"),
        ("[server]\nhttp_port = 'eighty'\n", "server.http_port: must be a whole number"),
        ("[server]\nhttp_port = 70000\n", "server.http_port: must be a port number"),
        ("[server]\ndhcp = 'maybe'\n", "server.dhcp: must be one of proxy, full, off"),
        ("[serve]\nroot = '/x'\n", "serve: unknown section"),
        ("[dhcp]\nrouter = '10.0.0.300'\n", "dhcp.router: '10.0.0.300' is not an IPv4 address"),
        ("[clients.pc01]\nhostname = 'a'\n", "clients.pc01: section name must be a MAC"),
        ("[clients]\nroot_pw = 'x'\n", "clients.root_pw: unknown key"),
        ("[server\n", "(syntax)"),
    ],
)
def test_bad_config_is_one_line_naming_key_and_file(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "netboot.toml"
    path.write_text(toml)
    result = run_netboot("serve", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert str(path) in lines[0]


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    result = run_netboot("serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr and "No such file" in result.stderr


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "netboot.toml"
    path.write_text(
        "[server]\nhttp_port = 8081\nroot = '/from/file'\n[clients]\nhostname = 'x'\n"
        "[clients.'52:54:00:00:00:01']\nimage = 'lab'\n"
    )
    config = cfg.load(path)
    config = cfg.apply_overrides(config, {"server.http_port": 9090, "server.root": None})
    assert config.server.http_port == 9090
    assert config.server.root == "/from/file"
    assert config.client_settings("52:54:00:00:00:01") == {"hostname": "x", "image": "lab"}
    with pytest.raises(cfg.ConfigError, match=r"server\.http_port.*command line"):
        cfg.apply_overrides(config, {"server.http_port": 99999})


def test_every_config_key_has_a_default_of_its_type() -> None:
    for section, keys in cfg.SCHEMA.items():
        for name, key in keys.items():
            assert isinstance(key.default, key.type), f"{section}.{name}"


@dataclass
class Link:
    """The server's namespace (eth0, 10.232.0.1/24) linked to a peer's (10.232.0.2)."""

    server: Namespace
    tmp_path: Path

    def serve(self, **flags) -> ServeProcess:
        """`netboot serve` on eth0, not started; `flags` as `ServeProcess` takes them."""
        defaults = {"interface": "eth0", "address": SERVER_IP, "log_path": self.tmp_path / "log"}
        return ServeProcess(self.server, self.tmp_path / "root", **{**defaults, **flags})


@pytest.fixture
def ns_link(tmp_path: Path) -> Iterator[Link]:
    tag = new_tag()
    server, peer = Namespace("srv", tag), Namespace("peer", tag)
    try:
        veth(server, "eth0", peer, "eth0")
        server.up("eth0", f"{SERVER_IP}/24")
        peer.up("eth0", "10.232.0.2/24")
        yield Link(server, tmp_path)
    finally:
        peer.close()
        server.close()


@pytest.mark.netns
def test_defaults_pick_the_default_route_interface_and_create_the_root(
    ns_link: Link, tmp_path: Path
) -> None:
    server = ns_link.server
    server.ip("route", "add", "default", "via", "10.232.0.2")
    root = tmp_path / "srv"
    # nothing but the root: the embedded defaults
    none = {"interface": None, "address": None, "http_port": None, "tftp_port": None}
    proc = ServeProcess(server, root, dhcp=None, log_path=tmp_path / "log", **none)
    proc.start()
    try:
        assert "netboot serving 10.232.0.1 on eth0" in proc.log()
        assert "HTTP http://10.232.0.1," in proc.log()
        assert ", loop uvloop" in proc.log()  # a dependency: the storm figures assume it
        assert (root / "ipxe" / "undionly.kpxe").read_bytes() == Path(
            "/usr/lib/ipxe/undionly.kpxe"
        ).read_bytes()
        assert (root / "images").is_dir()
        script = server.run("curl", "-sf", "http://10.232.0.1/boot.ipxe?mac=52-54-00-00-00-01")
        assert "item local Boot from local disk" in script.stdout
    finally:
        assert proc.stop() == 0


@pytest.mark.netns
def test_sigterm_stops_cleanly_and_frees_the_ports(ns_link: Link) -> None:
    server = ns_link.server
    proc = ns_link.serve().start()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=15) == 0
    assert "stopping" in proc.log()
    # every port it held can be bound again at once
    with server.entered():
        for kind, port in (
            (socket.SOCK_STREAM, 80),
            (socket.SOCK_DGRAM, 67),
            (socket.SOCK_DGRAM, 4011),
            (socket.SOCK_DGRAM, 69),
        ):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("0.0.0.0", port))
            s.close()


@pytest.mark.netns
def test_ctrl_c_exits_zero(ns_link: Link) -> None:
    proc = ns_link.serve().start()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=15) == 0


@pytest.mark.netns
def test_http_port_taken_falls_back_with_a_clear_message(ns_link: Link) -> None:
    server = ns_link.server
    with server.entered():
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("0.0.0.0", 80))
    squatter.listen()
    try:
        proc = ns_link.serve().start()
        try:
            assert "HTTP port 80 is taken: serving HTTP on port 8080 instead" in proc.log()
            # and the URLs handed to clients carry the port actually used
            chain = server.run("curl", "-sf", "http://10.232.0.1:8080/boot.ipxe").stdout
            assert "chain http://10.232.0.1:8080/boot.ipxe?" in chain
        finally:
            assert proc.stop() == 0
    finally:
        squatter.close()


def test_unknown_interface_is_one_line(tmp_path: Path) -> None:
    result = run_netboot("serve", "--interface", "nosuch0", "--root", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "netboot serve: no such interface: nosuch0"


@pytest.mark.netns
def test_dhcp_port_in_use_is_one_line(ns_link: Link, tmp_path: Path) -> None:
    server = ns_link.server
    with server.entered():
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("0.0.0.0", 4011))
    try:
        result = server.run(
            *NETBOOT, "serve", "--interface", "eth0", "--root", str(tmp_path / "r"), check=False
        )
        assert result.returncode == 2
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "netboot serve: cannot open the dhcp sockets: Address already in use"
        )
    finally:
        squatter.close()


def test_every_config_key_has_a_serve_flag() -> None:
    from netboot.config_flags import flag_name

    help_text = run_netboot("serve", "--help").stdout
    hand_written = {
        "server.interface": "--interface",
        "server.address": "--address",
        "server.root": "--root",
        "server.http_port": "--http-port",
        "server.tftp_port": "--tftp-port",
        "server.dhcp": "--dhcp",
        "server.ltsp_compat": "--ltsp",
        "dhcp.force": "--force",
        "dhcp.reservations": "--dhcp-reservation",
    }
    for section in ("server", "boot", "ipxe", "dhcp"):
        for key in cfg.SCHEMA[section]:
            dotted = f"{section}.{key}"
            if dotted in ("server.dhcp_port", "server.proxy_port"):
                continue  # test-only ports, hidden from --help but present
            flag = hand_written.get(dotted, flag_name(section, key))
            if not cfg.SCHEMA[section][key].flag:  # a table only the config file holds
                assert flag not in help_text, dotted
                continue
            assert flag in help_text, dotted


@pytest.mark.netns
def test_generated_flags_win_over_the_file(ns_link: Link, tmp_path: Path) -> None:
    server = ns_link.server
    config = tmp_path / "netboot.toml"
    config.write_text("[boot]\nmenu_timeout = 7\nkernel_params = 'quiet'\n")
    template = tmp_path / "mine.ipxe"
    template.write_text("#!ipxe\necho custom for {{mac}} timeout {{timeout_ms}}\n")
    proc = ns_link.serve(
        config=config,
        extra=(
            "--boot-menu-timeout",
            "2",
            "--ipxe-script",
            str(template),
            "--dhcp-reservation",
            "52:54:00:00:00:41=10.232.0.41,pc41",
        ),
    )
    proc.start()
    try:
        script = server.run("curl", "-sf", "http://10.232.0.1/boot.ipxe?mac=52-54-00-00-00-41")
        assert script.stdout == "#!ipxe\necho custom for 52:54:00:00:00:41 timeout 2000\n"
    finally:
        assert proc.stop() == 0


def test_bad_flag_value_names_the_key(tmp_path: Path) -> None:
    result = run_netboot(
        "serve", "--root", str(tmp_path), "--dhcp-reservation", "52:54:00:00:00:41=10.0.0.999"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "netboot serve: config error: dhcp.reservations.52:54:00:00:00:41.address: "
        "'10.0.0.999' is not an IPv4 address (in command line)"
    )


def test_config_sections_are_typed_and_frozen(tmp_path: Path) -> None:
    """Every schema key is an attribute of its section; nothing can change a loaded config."""
    import dataclasses

    config = cfg.defaults()
    for section, keys in cfg.SCHEMA.items():
        for name, key in keys.items():
            assert getattr(getattr(config, section), name) == key.default, f"{section}.{name}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.http_port = 1  # type: ignore[misc]
    changed = cfg.apply_overrides(config, {"boot.menu_timeout": 0})
    assert changed.boot.menu_timeout == 0 and config.boot.menu_timeout == 5


def test_clients_and_reservations_are_checked_alike(tmp_path: Path) -> None:
    """Both are tables named by MAC; one checker names the bad key for either."""
    path = tmp_path / "netboot.toml"
    path.write_text("[dhcp.reservations.'52-54-00-00-00-09']\naddress = '10.0.0.9'\n")
    assert cfg.load(path).dhcp.reservations == {
        "52:54:00:00:00:09": {"address": "10.0.0.9", "hostname": ""}
    }
    for text, key in (
        ("[dhcp.reservations.'52:54:00:00:00:09']\nimage = 'x'\n", "reservations.52:54"),
        ("[clients.'52:54:00:00:00:09']\naddress = 'x'\n", "clients.52:54:00:00:00:09.address"),
        ("[dhcp.reservations.pc9]\naddress = '10.0.0.9'\n", "dhcp.reservations.pc9"),
    ):
        path.write_text(text)
        with pytest.raises(cfg.ConfigError, match=re.escape(key)):
            cfg.load(path)
