"""HTTP's two layouts (own thread, or the main loop): binding, port fallback, and state the
main loop owns read on the main loop. Loopback only, no root."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from netboot import config as config_mod
from netboot.http import HttpServer, HttpServerThread, NetbootApp, on_loop
from netboot.records import ClientRecords

LAYOUTS = {"thread": HttpServerThread, "loop": HttpServer}


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.load(response)


def make_app(tmp_path: Path, stats: Any) -> NetbootApp:
    config = config_mod.parse({"server": {"root": str(tmp_path)}}, "test")
    return NetbootApp(config, ClientRecords(), policy=lambda: None, stats=stats)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_stats_are_read_on_the_loop_that_owns_them(tmp_path: Path, layout: str) -> None:
    readers: list[threading.Thread] = []

    def stats() -> dict[str, Any]:
        readers.append(threading.current_thread())
        return {"dhcp": {"offers": 3}}

    app = make_app(tmp_path, on_loop(asyncio.get_running_loop(), stats))
    http = LAYOUTS[layout](app.build)
    port = await http.start("127.0.0.1", [0])
    try:
        assert port != 0 and http.port == port
        assert await asyncio.to_thread(get_json, port, "/api/stats") == {"dhcp": {"offers": 3}}
    finally:
        await http.close()
    assert readers == [threading.current_thread()]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_a_taken_port_falls_back_to_the_next(tmp_path: Path, layout: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        http = LAYOUTS[layout](make_app(tmp_path, None).build)
        port = await http.start("127.0.0.1", [busy, 0])
        try:
            assert port not in (0, busy)
            assert await asyncio.to_thread(get_json, port, "/api/clients") == []
        finally:
            await http.close()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_no_free_port_raises_and_leaves_nothing_running(tmp_path: Path, layout: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http = LAYOUTS[layout](make_app(tmp_path, None).build)
        with pytest.raises(OSError):
            await http.start("127.0.0.1", [taken.getsockname()[1]])
    await http.close()
    assert not [t for t in threading.enumerate() if t.name == "netboot-http"]


async def test_api_clients_is_paged(tmp_path: Path) -> None:
    """Issue 12: 5,000 clients made /api/clients a 42 MB answer; now a page of at most
    CLIENTS_PAGE_MAX records, the total in X-Total-Count."""
    app = make_app(tmp_path, None)
    for i in range(250):
        app.records.event(f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", "script")
    http = HttpServer(app.build)
    port = await http.start("127.0.0.1", [0])

    def get(path: str) -> tuple[Any, str | None]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.load(response), response.headers.get("X-Total-Count")

    try:
        first, total = await asyncio.to_thread(get, "/api/clients")
        assert len(first) == 100 and total == "250"
        last, _ = await asyncio.to_thread(get, "/api/clients?offset=200&limit=5000")
        assert [r["mac"] for r in last] == [f"02:00:00:00:00:{i:02x}" for i in range(200, 250)]
        with pytest.raises(urllib.error.HTTPError) as bad:
            await asyncio.to_thread(get, "/api/clients?limit=many")
        assert bad.value.code == 400
    finally:
        await http.close()
