"""Waiting for a condition with a deadline: how tests synchronise, instead of sleeping for a
guessed time that a loaded machine overruns and an idle one wastes."""

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_SECONDS = 0.02


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, seconds: float = 30.0
) -> None:
    """Poll `condition` (plain or async) until it holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {seconds:g} s waiting until {what}")
        await asyncio.sleep(POLL_SECONDS)
