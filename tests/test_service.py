"""netboot as a service: the systemd unit and its install, readiness over NOTIFY_SOCKET,
SIGHUP reload, and `netboot serve` run as an unprivileged user with only the unit's two
capabilities (NET_BIND_SERVICE, NET_RAW) answering PXE, TFTP and HTTP."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from netboot import config as cfg
from netboot import reload, sdnotify
from netboot.commands.service import unit_text
from netboot.dhcp.packet import parse_reply
from testbed.cli import run_netboot
from testbed.netns import Namespace, new_tag, veth
from testbed.serve import ServeProcess
from testbed.unprivileged import as_service_user, remove, system_venv, world_readable_dir

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "netboot.service"
SERVER_IP = "10.233.0.1"
CLIENT_IP = "10.233.0.2"
MAC = "52:54:00:5e:00:01"


# --- the unit ------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")


def test_unit_runs_unprivileged_with_two_capabilities() -> None:
    unit = unit_settings(UNIT.read_text())
    assert unit["User"] == "netboot"
    assert unit["Type"] == "notify"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(unit[key].split()) == {"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["ProtectSystem"] == "strict"
    assert unit["StateDirectory"] == "netboot"  # the default lease file's directory
    assert cfg.defaults().dhcp.lease_file.startswith("/var/lib/netboot/")
    assert "AF_PACKET" in unit["RestrictAddressFamilies"].split()  # the ARP probe
    assert unit["SystemCallFilter"].startswith("~@clock @cpu-emulation @debug")


def test_unit_text_fills_in_interpreter_user_and_paths() -> None:
    text = unit_text(
        UNIT.read_text(),
        python=Path("/opt/nb/bin/python3"),
        config=Path("/etc/nb.toml"),
        user="nbsvc",
        group="nbgrp",
        writable=[Path("/srv/a"), Path("/srv/b")],
    )
    unit = unit_settings(text)
    assert unit["ExecStart"] == "/opt/nb/bin/python3 -m netboot serve --config /etc/nb.toml"
    assert (unit["User"], unit["Group"]) == ("nbsvc", "nbgrp")
    assert unit["ReadWritePaths"] == "/srv/a /srv/b"


# --- reload and readiness, without a process ------------------------------------------------


def test_reload_applies_boot_keys_and_names_restart_keys(tmp_path: Path) -> None:
    running = cfg.defaults()
    loaded = cfg.parse(
        {"boot": {"menu_timeout": 9}, "server": {"http_port": 8088, "dhcp": "full"}}, "x.toml"
    )
    assert reload.restart_keys(running, loaded) == ["server.http_port", "server.dhcp"]
    applied = reload.applicable(running, loaded)
    assert applied.boot.menu_timeout == 9
    assert applied.server == running.server


def test_reload_applies_entries_and_names_relayed_subnets_for_restart() -> None:
    running = cfg.defaults()
    subnet = {"range_start": "10.1.2.100", "range_end": "10.1.2.199"}
    loaded = cfg.parse(
        {"entries": {"di": {"kernel": "di/linux"}}, "dhcp": {"subnets": {"10.1.2.0/24": subnet}}},
        "x.toml",
    )
    assert reload.restart_keys(running, loaded) == ["dhcp.subnets"]
    applied = reload.applicable(running, loaded)
    assert list(applied.entries) == ["di"]
    assert applied.dhcp.subnets == {}


def test_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sdnotify.notify("READY=1", "STATUS=ok")
        assert listener.recv(100) == b"READY=1\nSTATUS=ok"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.notify("READY=1")


# --- the real thing ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    """World-readable: a system-Python venv of this checkout, served roots, the notify socket."""
    directory = world_readable_dir("nbtest-service-")
    try:
        system_venv(directory)
        yield directory
    finally:
        remove(directory)


@pytest.mark.root
def test_install_writes_unit_config_and_owned_dirs(shared_dir: Path) -> None:
    base = shared_dir / "install"
    base.mkdir()
    python = shared_dir / "venv" / "bin" / "python3"
    config_file = base / "etc" / "netboot.toml"
    result = run_netboot(
        "service", "install", "--user", "nobody", "--python", str(python),
        "--config", str(config_file), "--root", str(base / "srv"),
        "--unit-dir", str(base / "units"), "--state-dir", str(base / "state"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote {config_file}" in result.stdout
    assert cfg.load(config_file).root == base / "srv"
    nobody = pwd.getpwnam("nobody").pw_uid
    for path in (base / "srv", base / "srv" / "ipxe", base / "srv" / "images", base / "state"):
        assert path.stat().st_uid == nobody, path
    unit = unit_settings((base / "units" / "netboot.service").read_text())
    assert unit["ExecStart"] == f"{python} -m netboot serve --config {config_file}"
    assert (unit["User"], unit["Group"]) == ("nobody", "nogroup")
    assert unit["ReadWritePaths"] == str(base / "srv")
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(base / "units" / "netboot.service")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stderr


@pytest.mark.root
def test_install_refuses_an_interpreter_under_root(tmp_path: Path) -> None:
    result = run_netboot(
        "service", "install", "--user", "nobody", "--python", "/root/no/python3",
        "--config", str(tmp_path / "c.toml"), "--unit-dir", str(tmp_path / "u"),
    )  # fmt: skip
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "user nobody cannot run netboot with /root/no/python3" in line
    assert "python3 -m venv" in line
    assert not (tmp_path / "u").exists()


def pxe_discover() -> bytes:
    chaddr = bytes.fromhex(MAC.replace(":", "")) + bytes(10)
    options = [
        ("message-type", "discover"),
        ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"),
        ("pxe_client_architecture", b"\x00\x00"),
        "end",
    ]
    return bytes(BOOTP(op=1, chaddr=chaddr, xid=0x5E1F, flags=0x8000) / DHCP(options=options))


@dataclass
class Unprivileged:
    server: Namespace
    client: Namespace
    serve: ServeProcess
    config: Path
    notices: socket.socket

    def curl(self, path: str, *args: str) -> subprocess.CompletedProcess:
        return self.client.run("curl", "-sS", "--max-time", "10", *args, path, check=False)

    def notice(self) -> str:
        return self.notices.recv(4096).decode()


@pytest.fixture
def unprivileged(shared_dir: Path, tmp_path: Path) -> Iterator[Unprivileged]:
    root = world_readable_dir("nbtest-root-")
    shutil.chown(root, "nobody", "nogroup")
    config = shared_dir / "netboot.toml"
    config.write_text("[boot]\nmenu_timeout = 5\n")
    config.chmod(0o644)
    notify_path = shared_dir / "notify.sock"
    notify_path.unlink(missing_ok=True)
    notices = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notices.bind(str(notify_path))
    notify_path.chmod(0o666)
    notices.settimeout(30)
    tag = new_tag()
    server, client = Namespace("srv", tag), Namespace("cli", tag)
    try:
        veth(server, "eth0", client, "eth0")
        server.up("eth0", f"{SERVER_IP}/24")
        client.up("eth0", f"{CLIENT_IP}/24")
        serve = ServeProcess(
            server, root, log_path=tmp_path / "log", interface="eth0", config=config
        )
        python = shared_dir / "venv" / "bin" / "python3"
        serve.args = [
            *as_service_user(), "env", f"NOTIFY_SOCKET={notify_path}",
            str(python), "-m", "netboot", *serve.args[3:],
        ]  # fmt: skip
        yield Unprivileged(server, client, serve, config, notices)
    finally:
        client.close()
        server.close()
        notices.close()
        remove(root)


@pytest.mark.netns
def test_serve_as_nobody_with_two_capabilities(unprivileged: Unprivileged) -> None:
    serve = unprivileged.serve.start()
    try:
        status = Path(f"/proc/{serve.proc.pid}/status").read_text()
        assert re.search(r"^Uid:\s+65534\s", status, re.M), status
        assert unprivileged.notice().startswith("READY=1\nSTATUS=serving 10.233.0.1 on eth0")
        # PXE DISCOVER answered with the boot file
        with unprivileged.client.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
            sock.bind(("0.0.0.0", 68))
            sock.settimeout(5)
            sock.sendto(pxe_discover(), ("255.255.255.255", 67))
            bootp, _ = parse_reply(sock.recv(4096))
        assert bootp.file.rstrip(b"\0") == b"ipxe/undionly.kpxe"
        # TFTP and HTTP serve the binary the service user copied into its own root
        binary = Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
        http = subprocess.run(
            unprivileged.client.exec("curl", "-sSf", f"http://{SERVER_IP}/ipxe/undionly.kpxe"),
            capture_output=True,
            check=True,
        )
        assert http.stdout == binary
        tftp = subprocess.run(
            unprivileged.client.exec("curl", "-sSf", f"tftp://{SERVER_IP}/ipxe/undionly.kpxe"),
            capture_output=True,
            check=True,
        )
        assert tftp.stdout == binary
    finally:
        assert serve.stop() == 0
    assert unprivileged.notice() == "STOPPING=1"


@pytest.mark.netns
def test_sighup_reloads_without_dropping_a_transfer(unprivileged: Unprivileged) -> None:
    root = Path(unprivileged.serve.args[unprivileged.serve.args.index("--root") + 1])
    serve = unprivileged.serve.start()
    try:
        assert unprivileged.notice().startswith("READY=1")
        script = f"http://{SERVER_IP}/boot.ipxe?mac={MAC}"
        assert "set menu-timeout 5000" in unprivileged.curl(script).stdout
        (root / "big.bin").write_bytes(os.urandom(16 << 20))
        download = subprocess.Popen(
            unprivileged.client.exec(
                "curl", "-sSf", "--limit-rate", "512K", "-o", "/dev/null",
                "-w", "%{size_download}", f"http://{SERVER_IP}/big.bin",
            ),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1)  # let the download start (~32 s at this rate; curl may burst at first)
        assert download.poll() is None, "the download ended before the reload"
        unprivileged.config.write_text("[boot]\nmenu_timeout = 9\n[dhcp]\nlease_time = 60\n")
        serve.proc.send_signal(signal.SIGHUP)
        assert unprivileged.notice() == "RELOADING=1"
        assert unprivileged.notice() == "READY=1"
        assert "set menu-timeout 9000" in unprivileged.curl(script).stdout
        restart = serve.wait_for("needs a restart")
        assert restart is not None and restart.endswith("needs a restart: dhcp.lease_time")
        out, _ = download.communicate(timeout=180)
        assert download.returncode == 0 and out == str(16 << 20)
        record = unprivileged.curl(f"http://{SERVER_IP}/api/clients/{MAC}", "-f").stdout
        assert '"script"' in record  # the client record from before the reload is kept
        # a bad file keeps the running config, in one line
        unprivileged.config.write_text("[boot]\nmenu_timeout = 'soon'\n")
        serve.proc.send_signal(signal.SIGHUP)
        assert unprivileged.notice() == "RELOADING=1"
        assert unprivileged.notice() == "READY=1"
        failed = serve.wait_for("reload failed")
        assert failed is not None and "boot.menu_timeout: must be a whole number" in failed
        assert "set menu-timeout 9000" in unprivileged.curl(script).stdout
        assert serve.alive()
    finally:
        assert serve.stop() == 0
