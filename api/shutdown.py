"""Graceful shutdown: a replica told to stop takes no new turns but finishes the running ones.

On SIGTERM the gate closes (new turns get 503 with Retry-After, and /readyz says not-ready so
a load balancer stops sending traffic); uvicorn stops accepting connections and waits for
the requests in progress; the turns still running after the grace period are cancelled,
which releases their claims, so their tokens stay valid for a retry elsewhere.
"""

import time
from collections.abc import Callable

from baton.api.errors import ApiError
from baton.api.reasons import UNAVAILABLE

SHUTTING_DOWN = "this replica is shutting down; retry with the same token"


class ShutdownGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._closed_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self._closed_at is None

    def close(self) -> None:
        if self._closed_at is None:
            self._closed_at = self._clock()

    def check(self) -> None:
        """Refuse a new turn once the replica is shutting down."""
        if self._closed_at is not None:
            raise ApiError(UNAVAILABLE, SHUTTING_DOWN)

    def remaining(self, grace_seconds: float) -> float:
        """What is left of the grace period (all of it if shutdown began some other way)."""
        if self._closed_at is None:
            return grace_seconds
        return max(0.0, self._closed_at + grace_seconds - self._clock())
