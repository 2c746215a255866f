"""Waiting for something another process or task does, with a bound on the wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], within: float = 3.0) -> bool:
    """Poll `condition` every 20 ms; its last value after at most `within` seconds."""
    for _ in range(int(within / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()
