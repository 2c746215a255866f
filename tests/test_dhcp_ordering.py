"""Per-client ordering of the full server's decisions (no sockets, no root)."""

from __future__ import annotations

import asyncio

from netboot.dhcp.ordering import ClientLocks


async def test_one_client_waits_for_its_earlier_request_others_do_not() -> None:
    locks = ClientLocks()
    order: list[str] = []
    release = asyncio.Event()

    async def decide(key: str, name: str, wait: bool) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            if wait:
                await release.wait()  # e.g. an ARP probe
            order.append(f"{name} out")

    first = asyncio.create_task(decide("a", "a1", True))
    second = asyncio.create_task(decide("a", "a2", False))
    other = asyncio.create_task(decide("b", "b1", False))
    await asyncio.sleep(0.01)
    assert order == ["a1 in", "b1 in", "b1 out"]  # b is not held up by a's wait
    release.set()
    await asyncio.gather(first, second, other)
    assert order[3:] == ["a1 out", "a2 in", "a2 out"]
    assert len(locks) == 0  # nothing kept between requests


async def test_a_failing_decision_releases_the_lock() -> None:
    locks = ClientLocks()
    try:
        async with locks.hold("a"):
            raise ValueError("bug")
    except ValueError:
        pass
    async with locks.hold("a"):
        pass
    assert len(locks) == 0
