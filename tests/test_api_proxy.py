"""API mode's file proxy: the client fetches the API's kernel, initrds and `{{ URL }}`s
through netboot under sealed names (pixiecore's `/_/file?name=`). A real boot API and file
server (testbed/bootapi.py) and `netboot serve` in the test's namespaces; curl is the client."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from netboot.api_files import ApiFileProxy
from netboot.boot import sealed
from testbed.bootapi import BootApi
from testbed.lan import SERVER_IP, Lan
from testbed.serve import ServeProcess, serve_on

MAC = "52:54:00:aa:dd:01"
API_PORT = 8798
BIG = 512 * 1024 * 1024  # bytes: far over what netboot may hold in memory for one download
PROXIED = re.compile(rf"http://{re.escape(SERVER_IP)}/_/file\?name=([\w-]+)")


def _reply() -> dict:
    return {
        "kernel": "/files/linux",
        "initrd": ["/files/initrd.gz", "/files/big.img"],
        "cmdline": {
            "console": "ttyS0",
            "quiet": True,
            "seed": {"url": "/files/seed.cfg"},
            "gone": {"url": "/files/missing"},
            "down": {"url": f"http://{SERVER_IP}:1/nothing-listens"},
        },
        "message": "proxied",
    }


@pytest.fixture
def files(tmp_path: Path) -> Path:
    where = tmp_path / "files"
    where.mkdir()
    (where / "linux").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (where / "initrd.gz").write_bytes(os.urandom(1024 * 1024))
    (where / "seed.cfg").write_text("d-i debian-installer/locale string en_US\n")
    with (where / "big.img").open("wb") as big:  # sparse: no disk, all of it crosses the wire
        big.truncate(BIG)
    return where


def _start(lan: Lan, tmp_path: Path, files: Path, *extra: str) -> Iterator[ServeProcess]:
    api = BootApi(lan.server_ns, SERVER_IP, API_PORT, [MAC], files, tmp_path / "api.log",
                  reply=_reply()).start()  # fmt: skip
    lan.serve.stop()
    try:
        serve = serve_on(lan.server_ns, lan.root, SERVER_IP, tmp_path / "serve.log",
                         extra=("--boot-api", api.url, *extra))  # fmt: skip
        try:
            yield serve
        finally:
            serve.stop()
    finally:
        api.stop()
        lan.serve.start()


@pytest.fixture
def proxying(lan: Lan, tmp_path: Path, files: Path) -> Iterator[ServeProcess]:
    yield from _start(lan, tmp_path, files)


def _script(lan: Lan, serve: ServeProcess) -> str:
    mac = MAC.replace(":", "-")
    return serve.curl(f"/boot.ipxe?mac={mac}&platform=pcbios", "-f", ns=lan.client_ns).stdout


def _fetch(lan: Lan, url: str, out: Path) -> tuple[int, int]:
    """(HTTP status, bytes received) of a GET by curl on the client segment."""
    got = lan.client_ns.run("curl", "-sS", "--max-time", "300", "-o", str(out), "-w",
                            "%{http_code} %{size_download}", url, check=False)  # fmt: skip
    status, size = got.stdout.split()
    return int(status), int(size)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _peak_rss(serve: ServeProcess) -> int:
    """The serve process's peak resident memory (VmHWM), in bytes."""
    assert serve.proc is not None
    status = Path(f"/proc/{serve.proc.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


@pytest.mark.netns
def test_files_arrive_intact_through_sealed_names(
    lan: Lan, proxying: ServeProcess, files: Path, tmp_path: Path
) -> None:
    script = _script(lan, proxying)
    assert "/files/" not in script and str(API_PORT) not in script  # no API URL leaks
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    words = kernel_line.split()
    assert words[2:4] == ["initrd=initrd0", "initrd=initrd1"]
    # pixiecore's object form: sorted keys, %q strings, bare flags, proxied URLs
    assert words[4] == 'console="ttyS0"'
    assert [w.split("=")[0] for w in words[5:-3]] == ["down", "gone", "quiet", "seed"]
    seed = next(w for w in words if w.startswith("seed="))
    pairs = {
        "linux": words[1],
        "initrd.gz": re.search(rf"initrd --name initrd0 ({PROXIED.pattern})", script).group(1),
        "seed.cfg": seed.removeprefix("seed="),
    }
    for name, url in pairs.items():
        assert PROXIED.fullmatch(url), url
        status, _ = _fetch(lan, url, tmp_path / "got")
        assert status == 200, proxying.log()
        assert (tmp_path / "got").read_bytes() == (files / name).read_bytes(), name
    record = proxying.api(f"/api/clients/{MAC}")
    assert any(e["kind"] == "api-file" for e in record["events"]), record


@pytest.mark.netns
def test_forged_or_altered_names_are_refused(
    lan: Lan, proxying: ServeProcess, tmp_path: Path
) -> None:
    kernel = re.search(r"^kernel (\S+)", _script(lan, proxying), re.M).group(1)
    name = PROXIED.fullmatch(kernel).group(1)
    altered = name[:30] + ("A" if name[30] != "A" else "B") + name[31:]
    forged = sealed.seal(f"http://{SERVER_IP}:{API_PORT}/files/linux")  # another key
    base = f"http://{SERVER_IP}/_/file"
    for bad in (altered, forged, name[:-4], "AAAA", "../../etc/passwd"):
        status, size = _fetch(lan, f"{base}?name={bad}", tmp_path / "got")
        assert (status, size) == (403, len("forbidden\n")), bad
    assert _fetch(lan, base, tmp_path / "got")[0] == 400
    assert "Traceback" not in proxying.log()


@pytest.mark.netns
def test_upstream_failure_is_a_502_and_one_log_line(
    lan: Lan, proxying: ServeProcess, tmp_path: Path
) -> None:
    words = re.search(r"^kernel .*$", _script(lan, proxying), re.M).group(0).split()
    for key, reason in (("gone", "upstream answered 404"), ("down", "Cannot connect")):
        url = next(w for w in words if w.startswith(f"{key}=")).split("=", 1)[1]
        for _ in range(3):
            assert _fetch(lan, url, tmp_path / "got")[0] == 502
        lines = [line for line in proxying.log().splitlines() if reason in line]
        assert len(lines) == 1, proxying.log()  # rate-limited: one line, not one per request
        assert "boot API file http://" in lines[0]
    assert "Traceback" not in proxying.log()


@pytest.mark.netns
def test_a_large_file_streams_in_bounded_memory(
    lan: Lan, proxying: ServeProcess, files: Path, tmp_path: Path
) -> None:
    script = _script(lan, proxying)
    big = re.search(rf"initrd --name initrd1 ({PROXIED.pattern})", script).group(1)
    before = _peak_rss(proxying)
    status, size = _fetch(lan, big, tmp_path / "big")
    assert (status, size) == (200, BIG)
    assert _sha256(tmp_path / "big") == _sha256(files / "big.img")
    grown = _peak_rss(proxying) - before
    assert grown < 64 * 1024 * 1024, f"peak RSS grew {grown >> 20} MiB for a {BIG >> 20} MiB file"


@pytest.mark.netns
def test_without_the_proxy_the_client_gets_the_apis_urls(
    lan: Lan, tmp_path: Path, files: Path
) -> None:
    for serve in _start(lan, tmp_path, files, "--no-boot-api-proxy"):
        script = _script(lan, serve)
        api = f"http://{SERVER_IP}:{API_PORT}"
        assert re.search(rf"^kernel {api}/files/linux initrd=initrd0 ", script, re.M), script
        assert f"seed={api}/files/seed.cfg" in script
        assert "/_/file" not in script
        name = sealed.seal(f"{api}/files/linux")
        assert _fetch(lan, f"http://{SERVER_IP}/_/file?name={name}", tmp_path / "x")[0] == 403


def test_an_upstream_cut_midway_cuts_the_client(caplog: pytest.LogCaptureFixture) -> None:
    """Upstream promises 10 MB and hangs up after 1 MB: the client's download fails (it
    must not take a short file for a whole one) and the log has one line, no traceback.
    Both servers on this process's loopback, the client is aiohttp's."""

    async def half(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10_000_000
        await response.prepare(request)
        await response.write(b"x" * 1_000_000)
        assert request.transport is not None
        request.transport.close()
        return response

    async def scenario() -> str:
        upstream_app = web.Application()
        upstream_app.router.add_get("/f", half)
        upstream = await _serve_local(upstream_app)
        url = f"http://127.0.0.1:{_port(upstream)}/f"
        proxy = ApiFileProxy(lambda name: url if name == "ok" else None, _NoRecords())
        proxy_app = web.Application()
        proxy_app.router.add_get("/_/file", proxy.handle)
        front = await _serve_local(proxy_app)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{_port(front)}/_/file?name=ok") as got:
                    assert got.status == 200  # the status line left before the cut
                    with pytest.raises(aiohttp.ClientPayloadError):
                        await got.read()
                async with session.get(f"http://127.0.0.1:{_port(front)}/_/file?name=x") as got:
                    return f"{got.status}"
        finally:
            await front.cleanup()
            await upstream.cleanup()

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) == "403"
    lines = [r for r in caplog.records if r.name == "netboot.http.api_files"]
    assert len(lines) == 1 and "Not enough data" in lines[0].getMessage(), caplog.text
    assert not any(r.exc_info for r in caplog.records), caplog.text


class _NoRecords:
    def event(self, *args: object, **kwargs: object) -> None:
        pass


async def _serve_local(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def _port(runner: web.AppRunner) -> int:
    return runner.addresses[0][1]
