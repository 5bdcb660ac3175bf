"""Graceful shutdown: a replica told to stop takes no new turns but finishes the running ones.

On SIGTERM the gate closes (new turns get 503 with Retry-After, and /readyz says not-ready so
a load balancer stops sending traffic); uvicorn stops accepting connections and waits for
the requests in progress; the turns still running after the grace period are cancelled,
which releases their claims, so their tokens stay valid for a retry elsewhere.

A request held back on purpose (a blocked client's paced 429, api/refusal_limit.py) waits
through the gate's `hold`, which ends at once when shutdown begins (`let_go`), so a held
answer never keeps a stopping replica waiting.
"""

import asyncio
import time
from collections.abc import Callable

from baton.api.errors import ApiError
from baton.api.reasons import UNAVAILABLE

SHUTTING_DOWN = "this replica is shutting down; retry with the same token"


class ShutdownGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._closed_at: float | None = None
        self._held: set[asyncio.Future[bool]] = set()

    @property
    def is_open(self) -> bool:
        return self._closed_at is None

    @property
    def held(self) -> int:
        """Requests waiting in `hold` now."""
        return len(self._held)

    def close(self) -> None:
        if self._closed_at is None:
            self._closed_at = self._clock()

    def let_go(self) -> None:
        """Close the gate, and end every hold now. In the event loop only: `close` may run in
        a signal handler (api/serving.py), where no future may be touched, so the server
        calls this at its next tick."""
        self.close()
        for woken in self._held:
            _wake(woken, False)

    async def hold(self, seconds: float) -> bool:
        """Wait `seconds`, or less if shutdown begins first: whether the wait ran its full
        length. O(1): one future and one timer, as asyncio.sleep itself takes."""
        if self._closed_at is not None:
            return False
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(seconds, _wake, woken, True)
        self._held.add(woken)
        try:
            return await woken
        finally:
            timer.cancel()
            self._held.discard(woken)

    def check(self) -> None:
        """Refuse a new turn once the replica is shutting down."""
        if self._closed_at is not None:
            raise ApiError(UNAVAILABLE, SHUTTING_DOWN)

    def remaining(self, grace_seconds: float) -> float:
        """What is left of the grace period (all of it if shutdown began some other way)."""
        if self._closed_at is None:
            return grace_seconds
        return max(0.0, self._closed_at + grace_seconds - self._clock())


def _wake(woken: "asyncio.Future[bool]", served: bool) -> None:
    if not woken.done():  # the timer and let_go may both come; the first one counts
        woken.set_result(served)
