"""Both loops `netboot serve` can run on give the socket and file calls netboot makes.

uvloop lacks loop.sock_sendto/sock_recvfrom and loop.sendfile; the CI run that first put
serve on uvloop failed at the full-DHCP start-up check, which used the first two. These
run the real calls on real sockets under each loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from netboot import eventloop
from netboot.datagram import recvfrom, sendto
from netboot.http import HttpServerThread


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NETBOOT_LOOP", request.param)
    return str(request.param)


def test_datagram_round_trip_on_either_loop(loop_kind: str) -> None:
    async def main() -> tuple[str, bytes, bytes]:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (a, b):
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        try:
            waiting = asyncio.ensure_future(recvfrom(b, 2048))
            await asyncio.sleep(0.05)  # the receive waits on the loop's selector first
            await sendto(a, b"ping", b.getsockname())
            data, addr = await asyncio.wait_for(waiting, 2)
            assert addr == a.getsockname()
            await sendto(b, b"pong", addr)
            back, _ = await asyncio.wait_for(recvfrom(a, 2048), 2)
            with pytest.raises(TimeoutError):  # a cancelled wait leaves the socket usable
                await asyncio.wait_for(recvfrom(a, 2048), 0.05)
            await sendto(b, b"again", addr)
            again, _ = await asyncio.wait_for(recvfrom(a, 2048), 2)
            assert again == b"again"
            return eventloop.name(), data, back
        finally:
            a.close()
            b.close()

    kind, data, back = eventloop.run(main())
    assert (kind, data, back) == (loop_kind, b"ping", b"pong")


def test_http_thread_sends_files_with_the_kernels_sendfile(tmp_path: Path) -> None:
    """The HTTP thread's loop must have loop.sendfile, or aiohttp copies through Python."""
    (tmp_path / "blob").write_bytes(b"x" * 300_000)
    calls: list[int] = []
    original = asyncio.BaseEventLoop.sendfile

    async def counted(self, transport, file, offset=0, count=None, *, fallback=True):  # type: ignore[no-untyped-def]
        calls.append(threading.get_ident())
        return await original(self, transport, file, offset, count, fallback=fallback)

    asyncio.BaseEventLoop.sendfile = counted  # type: ignore[method-assign]
    try:
        body = eventloop.run(_fetch_through_thread(tmp_path))
    finally:
        asyncio.BaseEventLoop.sendfile = original  # type: ignore[method-assign]
    assert body == b"x" * 300_000
    assert calls, "the HTTP thread's loop did not use loop.sendfile"


async def _fetch_through_thread(root: Path) -> bytes:
    """Serve `root/blob` from an HttpServerThread (as serve does, from a uvloop main loop)."""

    async def blob(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "blob")

    def app() -> web.Application:
        application = web.Application()
        application.router.add_get("/blob", blob)
        return application

    server = HttpServerThread(app)
    port = await server.start("127.0.0.1", [0])
    try:
        url = f"http://127.0.0.1:{port}/blob"
        return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    finally:
        await server.close()
