"""HTTP against hostile clients over real sockets (issue 12): malformed requests, names the
kernel refuses, forged log lines, idle and slow connections, and an fd-exhaustion attempt
against a server with a small open-file limit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.lan import SERVER_IP, Lan, open_lan

pytestmark = pytest.mark.netns

IDLE_TIMEOUT = 2
FD_LIMIT = 300  # the server's hard RLIMIT_NOFILE: its HTTP cap is 300 - 256 = 44
FLOOD = 400  # idle connections held open by the attacker: more than the fd limit


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    """A LAN whose server has a low fd limit and a short idle timeout."""
    extra = ("--http-idle-timeout", str(IDLE_TIMEOUT))
    with open_lan(tmp_path_factory.mktemp("hostile"), extra=extra, fd_limit=FD_LIMIT) as lan:
        (lan.root / "hello.txt").write_text("hello\n")
        yield lan


def connect(lan: Lan, timeout: float = 10) -> socket.socket:
    with lan.client_ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect((SERVER_IP, lan.serve.http_port))
    return sock


def raw_request(lan: Lan, data: bytes) -> bytes:
    """Send bytes, read until the server closes (or 10 s pass); the status line."""
    with connect(lan) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return reply.split(b"\r\n", 1)[0]


def server_fds(lan: Lan) -> int:
    assert lan.serve.proc is not None
    return len(os.listdir(f"/proc/{lan.serve.proc.pid}/fd"))


def stats(lan: Lan) -> dict:
    return json.loads(lan.curl("/api/stats", "-f").stdout)


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n",  # control byte in a name
    b"GET / HTTP/1.1\r\nHost: x\r\nNo-colon-here\r\n\r\n",
    b"GET /\x7f\x00 HTTP/1.1\r\nHost: x\r\n\r\n",  # bad URL bytes
    b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n",  # unparsable absolute URL
    b"GET / HTTP/9.9x\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",  # request line over max_line_size
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 9000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
]


def test_malformed_requests_are_counted_not_traced(small: Lan) -> None:
    for _ in range(25):
        for data in MALFORMED:
            status = raw_request(small, data)
            assert not status.startswith(b"HTTP/1.1 5"), (data[:40], status)
    log = small.serve.log()
    assert "Traceback" not in log
    assert "Error handling request" not in log
    dropped = sum(v for k, v in stats(small)["http"].items() if k.startswith("http-malformed"))
    assert dropped >= 25 * (len(MALFORMED) - 1)
    # one line per interval at most: a handful, not one per request
    assert 0 < log.count("dropped malformed HTTP request") <= 5
    assert small.curl("/hello.txt", "-f").stdout == "hello\n"


def test_names_the_kernel_refuses_are_404(small: Lan) -> None:
    long_name = "a" * 300  # > NAME_MAX (255): ENAMETOOLONG
    for path in (f"/{long_name}", f"/images/{long_name}/x", "/" + "b/" * 2100 + "c"):
        result = small.curl(path, "-o", "/dev/null", "-w", "%{http_code}")
        assert result.stdout == "404", path
    assert "Traceback" not in small.serve.log()


def test_newline_in_platform_cannot_forge_a_log_line(small: Lan) -> None:
    forged = "client 52:54:00:00:00:01 kernel ip=10.0.0.9 FORGED"
    query = "mac=52-54-00-00-00-77&platform=efi%0A" + forged.replace(" ", "%20")
    assert small.curl(f"/boot.ipxe?{query}", "-f").returncode == 0
    lines = small.serve.log().splitlines()
    assert not any(line.startswith(forged) or line.startswith("client 52:54") for line in lines)
    assert any("platform=efi\\n" + forged in line for line in lines)


def test_slow_request_head_is_closed(small: Lan) -> None:
    """A client that sends its request head a byte at a time never completes it."""
    with connect(small, timeout=1) as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n")
        closed = False
        deadline = time.monotonic() + IDLE_TIMEOUT * 10
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X")
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
    assert closed


def test_idle_flood_beyond_the_fd_limit(small: Lan, tmp_path: Path) -> None:
    """More idle connections than the server has fds: TFTP and the API keep answering,
    the log stays small, idle connections are closed and the fds come back."""
    start_fds = server_fds(small)
    start_log = len(small.serve.log())
    held: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            try:
                held.append(connect(small, timeout=2))
            except OSError:
                break  # refused or the backlog is full: the cap works
        assert len(held) > 44
        got = tmp_path / "hello"
        tftp = subprocess.run(
            small.client_ns.exec("tftp", SERVER_IP, "-c", "get", "hello.txt", str(got)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert got.read_text() == "hello\n", tftp.stdout + tftp.stderr
        assert server_fds(small) < FD_LIMIT
        refused = stats_when_possible(small)
        assert refused.get("http-refused-cap", 0) > 0
    finally:
        for sock in held:
            sock.close()
    # the server closes idle connections itself: curl gets through and fds return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server_fds(small) > start_fds + 2:
        time.sleep(0.5)
    assert server_fds(small) <= start_fds + 2
    log = small.serve.log()[start_log:]
    assert "Traceback" not in log
    assert "out of system resource" not in log
    assert len(log.splitlines()) < 50


def stats_when_possible(lan: Lan) -> dict:
    """/api/stats once a connection slot is free (idle ones are closed after the timeout)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = lan.curl("/api/stats", "-f")
        if result.returncode == 0:
            return json.loads(result.stdout)["http"]
        time.sleep(0.5)
    raise AssertionError("the API never answered")


def test_idle_connection_is_closed_by_the_server(small: Lan) -> None:
    with connect(small, timeout=IDLE_TIMEOUT * 10) as sock:
        assert sock.recv(1) == b""  # EOF from the server, not our timeout
