"""The asyncio side of running a turn: its timeout, and the heartbeat that renews its lease.

Kept apart from the protocol steps (domain/turn.py): this module knows tasks and timers,
not tokens or events. A supervised handler ends in its outcome, or in one of the
exceptions below, which the turn maps to a release or a contended end.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from domain.outcomes import Contended

T = TypeVar("T")

Renew = Callable[[], Awaitable[Contended | None]]
"""Renew the lease once: None while the claim holds, Contended once it was taken over."""


class TimedOut(Exception):
    """The turn ran past the turn timeout."""


class ClaimLost(Exception):
    """Raised into a handler whose claim was taken over; its turn can no longer commit."""

    def __init__(self, contended: Contended) -> None:
        super().__init__(f"the session moved on to version {contended.current}")
        self.contended = contended


async def stop(task: "asyncio.Future[T]") -> None:
    """Cancel a handler and give it a moment to unwind before its claim is released."""
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)


class Supervisor:
    """Runs one handler under a timeout while a heartbeat renews its lease."""

    def __init__(
        self,
        renew: Renew,
        *,
        beat_seconds: float,
        timeout_seconds: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._renew = renew
        self._beat = beat_seconds
        self._timeout = timeout_seconds
        self._sleep = sleep
        self._lost: Contended | None = None

    async def run(self, handler: "asyncio.Future[T]") -> T:
        """The handler's result; TimedOut, ClaimLost, or whatever the handler raised. On any
        exception the handler has been stopped (cancelled and given a moment to unwind)."""
        keeper = asyncio.ensure_future(self._keep_claim(handler))
        try:
            return await self._result(handler)
        except (TimedOut, asyncio.CancelledError):
            await stop(handler)
            raise
        finally:
            keeper.cancel()
            handler.cancel()  # a no-op once it is done

    async def _result(self, handler: "asyncio.Future[T]") -> T:
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                return await handler
        except TimeoutError:
            if deadline.expired():
                raise TimedOut from None
            raise  # the handler's own TimeoutError: a failure like any other
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._lost is not None and current is not None and not current.cancelling():
                raise ClaimLost(self._lost) from None  # the heartbeat cancelled the handler
            raise

    async def _keep_claim(self, handler: "asyncio.Future[T]") -> None:
        """Renew the lease well before it lapses; if the session was taken over meanwhile,
        stop the handler, since its turn can no longer commit."""
        while True:
            await self._sleep(self._beat)
            lost = await self._renew()
            if lost is not None:
                self._lost = lost
                handler.cancel()
                return
