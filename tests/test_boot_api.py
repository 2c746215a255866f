"""API mode: a pixiecore-style boot API decides which machines netboot answers and what they
boot. Pure checks of the reply format, then `netboot serve --boot-api` against a real API
(aiohttp, `testbed/bootapi.py`) in the test's namespace, probed with real PXE packets."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_proxy_dhcp import discover, exchange

from netboot.boot.api import ApiBoot, ApiRefusal, parse_reply
from testbed.bootapi import BootApi
from testbed.lan import SERVER_IP, Lan
from testbed.serve import ServeProcess, serve_on

API = "http://192.0.2.5:9000/api/"
OURS = "52:54:00:aa:cc:01"
REFUSED = "52:54:00:aa:cc:02"
API_PORT = 8799


def test_reply_urls_resolve_against_the_api() -> None:
    body = {"kernel": "/k", "initrd": ["i1", "https://x.example/i2"], "cmdline": "a=1\nb"}
    assert parse_reply(body, API) == ApiBoot(
        "http://192.0.2.5:9000/k",
        ("http://192.0.2.5:9000/api/i1", "https://x.example/i2"),
        ("a=1 b",),
        "",
    )


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"initrd": []},
        {"kernel": "k", "initrd": "i"},
        {"kernel": "k", "cmdline": {"a": 1}},
        {"kernel": "file:///etc/passwd"},
        {"kernel": "/k boot"},
    ],
)
def test_a_bad_reply_refuses_the_machine(body: object) -> None:
    assert isinstance(parse_reply(body, API), ApiRefusal)


def _serve(lan: Lan, tmp_path: Path, api_url: str, **flags: object) -> ServeProcess:
    log = tmp_path / "serve.log"
    return serve_on(lan.server_ns, lan.root, SERVER_IP, log, extra=("--boot-api", api_url), **flags)


@pytest.fixture(params=["proxy"])
def api_server(
    lan: Lan, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[BootApi, ServeProcess]]:
    """The API beside the server, and the server in API mode instead of the lan's own
    (proxyDHCP, or full DHCP with a pool on the lan)."""
    files = tmp_path / "files"
    files.mkdir()
    api = BootApi(lan.server_ns, SERVER_IP, API_PORT, [OURS], files, tmp_path / "api.log",
                  cmdline="console=ttyS0").start()  # fmt: skip
    lan.serve.stop()
    flags: dict[str, object] = {}
    if request.param == "full":
        config = tmp_path / "netboot.toml"
        config.write_text(
            '[dhcp]\nrange_start = "10.231.0.100"\nrange_end = "10.231.0.150"\nforce = true\n'
            f'probe = false\nlease_file = "{tmp_path / "leases.json"}"\n'
        )
        flags = {"dhcp": "full", "config": config}
    try:
        serve = _serve(lan, tmp_path, api.url, **flags)
        try:
            yield api, serve
        finally:
            serve.stop()
    finally:
        api.stop()
        lan.serve.start()


def answered(lan: Lan, serve: ServeProcess, mac: str):
    """The BOOTP reply to the first DISCOVER of `mac` (the API is asked within the deadline)."""
    answer = exchange(lan, discover(0, mac=mac), timeout=5)
    assert answer is not None, serve.log()
    return answer[0]


@pytest.mark.netns
def test_api_claimed_machine_is_answered_and_boots_the_apis_kernel(
    lan: Lan, api_server: tuple[BootApi, ServeProcess]
) -> None:
    api, serve = api_server
    # the first DISCOVER of an unknown MAC waits for the API and is answered
    bootp = answered(lan, serve, OURS)
    assert bootp.file.rstrip(b"\0") == b"ipxe/undionly.kpxe"
    assert api.requests()[0] == {"path": f"/v1/boot/{OURS}", "query": {"arch": "0"}}
    # the next packets are answered from the cache: no second call
    assert exchange(lan, discover(0, mac=OURS)) is not None
    assert len(api.requests()) == 1
    mac = OURS.replace(":", "-")
    script = serve.curl(f"/boot.ipxe?mac={mac}&platform=pcbios", "-f", ns=lan.client_ns).stdout
    # the API's files come through netboot under sealed names (tests/test_api_proxy.py)
    proxied = rf"http://{SERVER_IP}/_/file\?name=[\w-]+"
    assert re.search(rf"kernel {proxied} initrd=initrd0 console=ttyS0 \|\| goto failed", script)
    assert re.search(rf"initrd --name initrd0 {proxied} ", script)
    assert api.url not in script
    assert "goto img-api" in script  # booted at once
    assert "Booting the installer (boot API)" in script
    record = serve.api(f"/api/clients/{OURS}")
    assert next(e for e in record["events"] if e["kind"] == "boot-api")["ours"] is True


@pytest.mark.netns
@pytest.mark.parametrize("api_server", ["full"], indirect=True)
def test_full_dhcp_leases_to_all_but_boots_only_the_apis_machines(
    lan: Lan, api_server: tuple[BootApi, ServeProcess]
) -> None:
    api, serve = api_server
    ours = answered(lan, serve, OURS)
    assert ours.yiaddr.startswith("10.231.0.1")
    assert ours.file.rstrip(b"\0") == b"ipxe/undionly.kpxe"
    refused = answered(lan, serve, REFUSED)  # an address, as full DHCP gives everyone
    assert refused.file.rstrip(b"\0") == b""  # but no boot file: not the API's machine
    assert sorted(r["path"] for r in api.requests()) == [f"/v1/boot/{m}" for m in (OURS, REFUSED)]


@pytest.mark.netns
def test_api_refused_machine_gets_no_answer(
    lan: Lan, api_server: tuple[BootApi, ServeProcess]
) -> None:
    api, serve = api_server
    assert exchange(lan, discover(0, mac=REFUSED), timeout=4) is None
    assert exchange(lan, discover(9, mac=REFUSED), timeout=2) is None
    assert [r["path"] for r in api.requests()] == [f"/v1/boot/{REFUSED}"]  # cached refusal
    record = serve.api(f"/api/clients/{REFUSED}")
    assert "dhcp-offer" not in [e["kind"] for e in record["events"]]
    assert "boot API answered 404" in serve.log()


@pytest.mark.netns
def test_api_down_no_answer_and_one_log_line(lan: Lan, tmp_path: Path) -> None:
    lan.serve.stop()
    serve = _serve(lan, tmp_path, f"http://{SERVER_IP}:{API_PORT}")  # nothing listens
    try:
        for n in range(3):
            assert exchange(lan, discover(0, mac=f"52:54:00:aa:cc:1{n}"), timeout=4) is None
        deadline = time.monotonic() + 10
        while "unreachable" not in serve.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = [line for line in serve.log().splitlines() if "boot API" in line and
                 "unreachable:" in line]  # fmt: skip
        assert len(lines) == 1, serve.log()
    finally:
        serve.stop()
        lan.serve.start()
