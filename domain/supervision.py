"""The asyncio side of running a turn: its timeout, the heartbeat that renews its lease, and
the watch for a request to stop it.

Kept apart from the protocol steps (domain/turn.py): this module knows tasks and timers,
not tokens or events. A supervised handler ends in its outcome, or in one of the
exceptions below, which the turn maps to a release or a contended end.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from baton.domain.outcomes import Contended

T = TypeVar("T")

Renew = Callable[[], Awaitable[Contended | None]]
"""Renew the lease once: None while the claim holds, Contended once it was taken over."""

AskedToStop = Callable[[], Awaitable[bool]]
"""Whether the turn was asked to stop, as the store says (the fallback of a cancel request
that did not reach this process directly)."""


class TimedOut(Exception):
    """The turn ran past the turn timeout."""


class StopRequested(Exception):
    """The holder of the token asked for the turn to stop (PROTOCOL section 6.5)."""


class ClaimLost(Exception):
    """Raised into a handler whose claim was taken over; its turn can no longer commit."""

    def __init__(self, contended: Contended) -> None:
        super().__init__(f"the session moved on to version {contended.current}")
        self.contended = contended


async def stop(task: "asyncio.Future[T]") -> None:
    """Cancel a handler and give it a moment to unwind (it sees the standard
    asyncio.CancelledError and may clean up) before its claim is released."""
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)


@dataclass(frozen=True, slots=True)
class Timing:
    beat_seconds: float  # renew the lease this often
    timeout_seconds: float  # stop the turn after this long
    watch_seconds: float = 1.0  # look for a request to stop this often
    ask_store_seconds: float = 2.0  # and ask the store this often (0: never)


class Supervisor:
    """Runs one handler under a timeout while a heartbeat renews its lease and watches for
    a request to stop it."""

    def __init__(
        self,
        renew: Renew,
        asked_to_stop: AskedToStop,
        timing: Timing,
    ) -> None:
        self._renew = renew
        self._asked_to_stop = asked_to_stop
        self._timing = timing
        self._lost: Contended | None = None
        self._stop_requested = False
        self._told_to_stop = False  # set from outside: a cancel that reached this process

    def request_stop(self) -> None:
        """Stop the turn at the next watch (a cancel request that reached this process)."""
        self._told_to_stop = True

    async def run(self, handler: "asyncio.Future[T]") -> T:
        """The handler's result; TimedOut, StopRequested, ClaimLost, or whatever the handler
        raised. On any exception the handler has been stopped."""
        # Most turns end long before their first watch: a timer costs them far less than a
        # keeper task created and cancelled for every turn, so the keeper starts only when
        # the timer fires (make bench's CPU per turn counts the difference).
        loop = asyncio.get_running_loop()
        keeper: asyncio.Task[None] | None = None

        def start_keeping() -> None:
            nonlocal keeper
            keeper = loop.create_task(self._keep_claim(handler))

        first_watch = loop.call_later(self._watch_seconds(), start_keeping)
        try:
            return await self._result(handler)
        except (TimedOut, asyncio.CancelledError):
            await stop(handler)
            raise
        finally:
            first_watch.cancel()
            if keeper is not None:
                keeper.cancel()
            handler.cancel()  # a no-op once it is done

    def _watch_seconds(self) -> float:
        return min(self._timing.watch_seconds, self._timing.beat_seconds)

    async def _result(self, handler: "asyncio.Future[T]") -> T:
        deadline = asyncio.timeout(self._timing.timeout_seconds)
        try:
            async with deadline:
                return await handler
        except TimeoutError:
            if deadline.expired():
                raise TimedOut from None
            raise  # the handler's own TimeoutError: a failure like any other
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and not current.cancelling():
                # The keeper cancelled the handler, not someone cancelling this task.
                if self._lost is not None:
                    raise ClaimLost(self._lost) from None
                if self._stop_requested:
                    raise StopRequested from None
            raise

    async def _keep_claim(self, handler: "asyncio.Future[T]") -> None:
        """Renew the lease well before it lapses, and stop the handler if the session was
        taken over (its turn can no longer commit) or the turn was asked to stop. Started
        at the first watch, one watch after the handler began."""
        timing = self._timing
        watch = self._watch_seconds()
        loop = asyncio.get_running_loop()
        began = loop.time() - watch
        next_beat, next_ask = began + timing.beat_seconds, began + timing.ask_store_seconds
        while True:
            now = loop.time()
            if now >= next_beat:
                next_beat = now + timing.beat_seconds
                self._lost = await self._renew()
            stopping = self._told_to_stop
            if not stopping and timing.ask_store_seconds and now >= next_ask:
                next_ask = now + timing.ask_store_seconds
                stopping = await self._asked_to_stop()
            if self._lost is not None or stopping:
                self._stop_requested = self._lost is None
                handler.cancel()
                return
            await asyncio.sleep(watch)
