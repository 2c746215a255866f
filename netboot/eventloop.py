"""The event loop `netboot serve` runs on: uvloop's (libuv, in C) when it is installed.

Every packet of a storm costs one pass of the loop: a wake-up, a reader callback, a send.
On the stock asyncio loop that pass is Python code; on uvloop it is C, and bench/ measures
the difference (docs/performance.md, docs/tftp.md): about a quarter less CPU per TFTP block
and per DHCP answer. Transports, executors, subprocesses and signal handlers behave the
same; two things uvloop lacks are worked around: loop.sock_sendto/sock_recvfrom
(netboot.datagram.sendto/recvfrom serve every loop) and loop.sendfile (the HTTP thread
keeps the stock loop, whose sendfile is the kernel's zero-copy one). The stock loop is
used when uvloop is missing (an odd install) or NETBOOT_LOOP=asyncio asks for it (to tell
a loop problem from ours).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind `netboot serve` uses."""
    if os.environ.get("NETBOOT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on `new_loop()`."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)


def name() -> str:
    """'uvloop' or 'asyncio': the kind of loop running now (for the start-up line)."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
