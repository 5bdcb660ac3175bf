"""The asyncio side of running a turn: its timeout, the heartbeat that renews its lease, and
the watch for a request to stop it.

Kept apart from the protocol steps (domain/turn.py): this module knows tasks and timers,
not tokens or events. A supervised handler ends in its outcome, or in one of the
exceptions below, which the turn maps to a release or a contended end.
"""

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from baton.domain.outcomes import Contended
from baton.domain.values import value

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


@value
class Timing:
    beat_seconds: float  # renew the lease this often
    timeout_seconds: float  # stop the turn after this long
    watch_seconds: float = 1.0  # look for a request to stop this often
    ask_store_seconds: float = 2.0  # and ask the store this often (0: never)


class Supervisor:
    """Runs one handler under a timeout while a heartbeat renews its lease and watches for
    a request to stop it.

    The handler runs in the calling task, and one timer per turn stands for the timeout and
    the first watch alike: a separate task for the handler and an asyncio.timeout each cost
    a buffered turn about 10 µs of CPU on these machines (timeit; make bench-instructions
    counts the difference), and most turns end long before either timer is due. To stop
    the handler, the timer or the keeper cancels the calling task, noting why, as
    asyncio.timeout does; the cancellation is then told from one that came from outside (a
    replica shutting down) by the task's count of cancel requests.
    """

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
        self._told_to_stop = False  # set from outside: a cancel that reached this process
        self._ending: Callable[[], Exception] | None = None  # why this supervisor stopped it
        self._cancels = 0  # the cancel requests this supervisor made of the task
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._keeper: asyncio.Task[None] | None = None

    def request_stop(self) -> None:
        """Stop the turn at the next watch (a cancel request that reached this process)."""
        self._told_to_stop = True

    async def run(self, handler: Awaitable[T]) -> T:
        """The handler's result; TimedOut, StopRequested, ClaimLost, or whatever the handler
        raised. On any exception the handler has been stopped."""
        loop = asyncio.get_running_loop()
        self._task = task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a turn's handler runs in a task")
        outside = task.cancelling()  # requests already pending are not ours to withdraw
        began, timing = loop.time(), self._timing
        deadline = began + timing.timeout_seconds
        first_watch = began + self._watch_seconds()
        if deadline <= first_watch:
            self._timer = loop.call_at(deadline, self._time_out)
        else:
            self._timer = loop.call_at(first_watch, self._start_keeping, deadline)
        try:
            result = await handler
        except asyncio.CancelledError:
            ending = self._ending
            if ending is not None and self._withdraw(task) <= outside:
                raise ending() from None  # ours alone: the turn is stopped, not the replica
            raise
        finally:
            self._timer.cancel()
            if self._keeper is not None:
                self._keeper.cancel()
        # The handler caught our cancellation and returned all the same: its result stands
        # (the commit still checks the claim), and our requests are withdrawn.
        self._withdraw(task)
        return result

    def _watch_seconds(self) -> float:
        return min(self._timing.watch_seconds, self._timing.beat_seconds)

    def _stop(self, why: Callable[[], Exception]) -> None:
        """Cancel the handler, saying why. A handler that swallowed a stop request is
        cancelled again at its timeout, as asyncio.timeout would have."""
        if self._task is not None:
            self._ending = why
            self._cancels += 1
            self._task.cancel()

    def _withdraw(self, task: "asyncio.Task[Any]") -> int:
        """Take back this supervisor's cancel requests; the count of those left."""
        left = task.cancelling()
        for _ in range(self._cancels):
            left = task.uncancel()
        self._cancels = 0
        return left

    def _time_out(self) -> None:
        self._stop(TimedOut)

    def _start_keeping(self, deadline: float) -> None:
        """The first watch: the turn runs on, so now it needs its keeper (the timer is
        moved on to the timeout)."""
        loop = asyncio.get_running_loop()
        self._keeper = loop.create_task(self._keep_claim())
        self._timer = loop.call_at(deadline, self._time_out)

    async def _keep_claim(self) -> None:
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
            if (lost := self._lost) is not None:
                self._stop(partial(ClaimLost, lost))
                return
            if stopping:
                self._stop(StopRequested)
                return
            await asyncio.sleep(watch)
