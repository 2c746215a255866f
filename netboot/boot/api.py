"""API mode: a pixiecore-style HTTP API decides what each machine boots (`[boot] api`).

`GET <api>/v1/boot/<mac>?arch=N` answers 200 with JSON `{kernel, initrd[], cmdline, message}`
(pixiecore's format; URLs absolute or relative to the API); any other answer means the
machine is not ours and gets no PXE answer at all. Results are kept a short while so a
client's next packets (DHCP retries, 4011, the iPXE script request) are answered from memory.

Firmware retries DISCOVER at 4, 8 and 16 s: a transport that finds no result yet starts the
call (`ask`) and answers the packet if the result arrives within ANSWER_DEADLINE; a slower
result still fills the cache for the client's next try. The API's URLs (kernel, initrds,
`{{ URL "..." }}` of the cmdline) reach the client through `link` at render time: sealed
names netboot proxies (`netboot/boot/sealed.py`, pixiecore's way) or the URLs as given.

The cache is read from the DHCP loop and the HTTP thread alike: a lock guards it, and each
call opens its own client session so no session is tied to one loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urljoin

import aiohttp

from netboot.boot import api_cmdline, sealed
from netboot.boot.menu import BootEntry

log = logging.getLogger("netboot.boot.api")

ANSWER_DEADLINE = 3.0  # seconds a DHCP answer waits for the API (firmware retries at 4 s)
CALL_TIMEOUT = 10.0  # seconds one API call may take in all
KEEP_ANSWER = 60.0  # seconds a 200 answer is reused
KEEP_REFUSAL = 30.0  # seconds a refusal (non-200, bad JSON) is reused
KEEP_DOWN = 5.0  # seconds "the API is down" is reused
LOG_EVERY = 60.0  # at most one "API down" line per this many seconds
MAX_REPLY = 64 * 1024  # bytes of JSON read from the API
FILE_PATH = "/_/file"  # where clients fetch the API's files through netboot (as pixiecore)


def proxied_link(base: str) -> Callable[[str], str]:
    """How a client reaches an API URL through netboot (`base` is http://SERVER[:PORT]):
    `/_/file?name=<the URL sealed>`, which only this process can open."""
    return lambda url: f"{base}{FILE_PATH}?name={sealed.seal(url)}"


@dataclass(frozen=True)
class ApiBoot:
    """The API's decision for one machine: absolute kernel and initrd URLs, the command
    line as text and URLs alternating (`api_cmdline.parse`), the message."""

    kernel: str
    initrds: tuple[str, ...]
    cmdline: tuple[str, ...]
    message: str

    def command_line(self, link: Callable[[str], str] = str) -> str:
        return "".join(link(p) if i % 2 else p for i, p in enumerate(self.cmdline)).strip()

    def entry(self, link: Callable[[str], str] = str) -> BootEntry:
        """The menu entry, each URL as `link` makes it (a proxied name or the URL itself)."""
        names = tuple((f"initrd{i}", link(url)) for i, url in enumerate(self.initrds))
        label = self.message or "the boot API's choice"
        return BootEntry("api", label, link(self.kernel), names, self.command_line(link),
                         source="api")  # fmt: skip


@dataclass(frozen=True)
class ApiRefusal:
    """Not ours (the API said no) or not known (the API is down)."""

    reason: str


ApiResult = ApiBoot | ApiRefusal


def parse_reply(body: object, api_url: str) -> ApiResult:
    """pixiecore's JSON: `kernel` (string), `initrd` (list), `cmdline` (a template string or
    pixiecore's object form, `netboot/boot/api_cmdline.py`), `message`; null is as absent.
    URLs resolve against the API URL."""
    if not isinstance(body, dict) or not isinstance(body.get("kernel"), str):
        return ApiRefusal("API reply has no kernel")
    initrd = body.get("initrd") or []
    message = body.get("message") or ""
    if not isinstance(initrd, list) or not all(isinstance(i, str) for i in initrd):
        return ApiRefusal("API reply: initrd is not a list of strings")
    if not isinstance(message, str):
        return ApiRefusal("API reply: message must be a string")
    try:
        cmdline = api_cmdline.parse(body.get("cmdline"), api_url)
    except api_cmdline.CmdlineError as exc:
        return ApiRefusal(f"API reply: {exc}")
    urls = [urljoin(api_url, u) for u in [body["kernel"], *initrd]]
    given = [*urls, *cmdline[1::2]]
    if not all(u.startswith(("http://", "https://")) for u in given):
        return ApiRefusal("API reply names a URL that is not http(s)")
    if any(c.isspace() or not c.isprintable() for u in given for c in u):
        return ApiRefusal("API reply names a URL with spaces or control characters")
    # one line each: a newline would end the iPXE command it is put in
    flat = tuple(re.sub(r"\s+", " ", p) if i % 2 == 0 else p for i, p in enumerate(cmdline))
    return ApiBoot(urls[0], tuple(urls[1:]), flat, " ".join(message.split()))


class ApiBooter:
    """Asks the boot API about machines and remembers the answers for a short while."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, ApiResult]] = {}
        self._asking: dict[tuple[int, str], asyncio.Future[ApiResult]] = {}
        self._last_down_log = -LOG_EVERY

    def cached(self, mac: str) -> ApiResult | None:
        """The fresh result for this MAC, or None: ask first."""
        now = time.monotonic()
        with self._lock:
            found = self._cache.get(mac)
            if found is None or found[0] < now:
                self._cache.pop(mac, None)
                return None
            return found[1]

    def _remember(self, mac: str, result: ApiResult, keep: float) -> None:
        with self._lock:
            self._cache[mac] = (time.monotonic() + keep, result)
            if len(self._cache) > 10_000:  # many MACs: drop the expired ones
                now = time.monotonic()
                self._cache = {m: v for m, v in self._cache.items() if v[0] >= now}

    async def ask(self, mac: str, arch: int | None) -> ApiResult:
        """The API's answer for `mac` (one call at a time per MAC on this loop)."""
        key = (id(asyncio.get_running_loop()), mac)
        running = self._asking.get(key)
        if running is None:
            running = asyncio.ensure_future(self._call(mac, arch))
            self._asking[key] = running
            running.add_done_callback(lambda _f: self._asking.pop(key, None))
        return await asyncio.shield(running)

    async def _call(self, mac: str, arch: int | None) -> ApiResult:
        url = f"{self.api_url}v1/boot/{quote(mac)}"
        params = {"arch": str(arch)} if arch is not None else {}
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url, params=params, allow_redirects=False) as reply:
                    if reply.status != 200:
                        result: ApiResult = ApiRefusal(f"boot API answered {reply.status}")
                        self._remember(mac, result, KEEP_REFUSAL)
                        return result
                    raw = await reply.content.read(MAX_REPLY + 1)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._log_down(exc)
            result = ApiRefusal("boot API unreachable")
            self._remember(mac, result, KEEP_DOWN)
            return result
        result = _decode(raw, self.api_url)
        self._remember(mac, result, KEEP_ANSWER if isinstance(result, ApiBoot) else KEEP_REFUSAL)
        return result

    def _log_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_down_log >= LOG_EVERY:
            self._last_down_log = now
            problem = str(exc) or type(exc).__name__
            log.warning("boot API %s unreachable: %s (PXE clients get no answer)",
                        self.api_url, problem)  # fmt: skip


def _decode(raw: bytes, api_url: str) -> ApiResult:
    if len(raw) > MAX_REPLY:
        return ApiRefusal("boot API reply too large")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ApiRefusal("boot API reply is not JSON")
    return parse_reply(body, api_url)
