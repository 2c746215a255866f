"""A small pixiecore-style boot API (aiohttp) for API-mode tests, run in a test namespace.

`python -m testbed.bootapi --port P --allow MAC --files DIR --log FILE`: answers
`GET /v1/boot/<allowed MAC>` with pixiecore's JSON (kernel and initrd relative to the API,
served from DIR under /files/; or the JSON of `--reply`), 404 for any other MAC; every
request's path and query is appended to FILE as one JSON line, so a test sees what netboot
asked (e.g. `arch`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

from testbed.cleanup import stop_process
from testbed.netns import Namespace


def app(
    allow: set[str], files: Path, log: Path, cmdline: str, reply: dict | None = None
) -> web.Application:
    async def boot(request: web.Request) -> web.Response:
        with log.open("a") as out:
            out.write(json.dumps({"path": request.path, "query": dict(request.query)}) + "\n")
        if request.match_info["mac"] not in allow:
            raise web.HTTPNotFound(text="not ours\n")
        return web.json_response(
            reply
            or {
                "kernel": "/files/linux",
                "initrd": ["/files/initrd.gz"],
                "cmdline": cmdline,
                "message": "Booting the installer (boot API)",
            }
        )

    application = web.Application()
    application.router.add_get("/v1/boot/{mac}", boot)
    application.router.add_get("/ready", lambda _r: _ok())
    application.router.add_static("/files/", files)
    return application


async def _ok() -> web.Response:
    return web.Response(text="ok\n")


class BootApi:
    """The API as a child process in namespace `ns`, listening on `address:port`."""

    def __init__(
        self, ns: Namespace, address: str, port: int, allow: list[str], files: Path, log: Path,
        cmdline: str = "", reply: dict | None = None,
    ) -> None:  # fmt: skip
        self.ns = ns
        self.url = f"http://{address}:{port}"
        self.log = log
        args = ["--port", str(port), "--files", str(files), "--log", str(log)]
        args += [a for mac in allow for a in ("--allow", mac)] + ["--cmdline", cmdline]
        args += ["--reply", json.dumps(reply)] if reply else []
        self.argv = [sys.executable, "-m", "testbed.bootapi", *args]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> BootApi:
        self.log.touch()
        self.proc = self.ns.popen(*self.argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = self.ns.run("curl", "-sf", f"{self.url}/ready", check=False)
            if probe.returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("the test boot API did not start")

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--allow", action="append", default=[])
    parser.add_argument("--files", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--cmdline", default="")
    parser.add_argument("--reply", type=json.loads, default=None)
    args = parser.parse_args()
    application = app(set(args.allow), args.files, args.log, args.cmdline, args.reply)
    web.run_app(application, host="0.0.0.0", port=args.port, print=None)


if __name__ == "__main__":
    main()
