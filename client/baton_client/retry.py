"""The retry policy: what is retried, how long the client waits, when it gives up.

Retried, always with the same Idempotency-Key and token: a network error or a timeout, a
503 (or a gateway's 502/504), a stream that ended before its turn did, and `409 in-flight`
(waited out, see below). Never retried: `stale-token` (recovered through a read when an
earlier attempt's reply was lost, else raised) and every other refusal.

Waits grow exponentially with full jitter (a random wait between 0 and min(max_delay,
base_delay * 2**n)), and are never shorter than the server's Retry-After. One call gives up
after `max_attempts` attempts or once `deadline` seconds have passed, whichever comes first,
raising the last error (a network error as `Unavailable`). `in-flight` is waited out: every
Retry-After (1 s) the request is sent again, for up to `in_flight_wait` seconds; those
waits do not count as attempts. (Waiting rather than joining the running turn's event
stream: the retry then gets the committed reply whole, token included, or, if the turn ran
on a replica that died, takes the turn over once its lease lapses.)
"""

import asyncio
import random
import time
from dataclasses import dataclass

import httpx

from baton_client.errors import BatonError, InFlight, Unavailable
from baton_client.models import RecoveryStats

# Sending again is safe for these: the request may or may not have landed.
RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# ...and for these it certainly did not: no connection was made.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Dropped(Exception):
    """A stream ended before the turn it carried did."""


class Stalled(Dropped):
    """A resumed stream stored nothing for `resume_idle` seconds: the turn may belong to a
    replica that died (a stream follows a dead claim until its lease is taken over), so the
    turn is sent again instead, with the same key and token."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 10  # attempts of one call, the first included
    deadline: float = 90.0  # seconds one call may take, waits included
    base_delay: float = 0.1
    max_delay: float = 5.0
    max_retry_after: float = 30.0  # a longer Retry-After is cut to this
    # How long `409 in-flight` is waited out: longer than the server's lease (30 s by
    # default), so a turn whose replica died is taken over by the retry.
    in_flight_wait: float = 60.0
    resume_idle: float = 10.0  # a resumed stream silent this long: send the turn again

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**(retry - 1))]."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** min(retry - 1, 30)))


class Attempts:
    """One call's attempts: how many, since when, and whether one of them may have landed
    although its reply was lost (`ambiguous`): only then is `stale-token` worth recovering."""

    def __init__(self, policy: RetryPolicy, stats: RecoveryStats, rng: random.Random) -> None:
        self.policy = policy
        self.stats = stats
        self.rng = rng
        self.started = time.monotonic()
        self.failures = 0
        self.ambiguous = False
        self._in_flight_since: float | None = None

    async def absorb(self, error: Exception) -> None:
        """Wait before the next attempt after `error`, or raise if it is final."""
        if isinstance(error, InFlight):
            await self._wait_in_flight(error)
        elif isinstance(error, Unavailable):
            await self._retry(error, "503", ambiguous=True, retry_after=error.retry_after)
        elif isinstance(error, Dropped):
            cause = "stalled-stream" if isinstance(error, Stalled) else "dropped-stream"
            await self._retry(error, cause, ambiguous=True)
        elif isinstance(error, RETRYABLE):
            ambiguous = not isinstance(error, NOT_SENT)
            await self._retry(error, type(error).__name__, ambiguous=ambiguous)
        else:
            raise error

    def left(self) -> float:
        return self.policy.deadline - (time.monotonic() - self.started)

    async def _retry(
        self, error: Exception, cause: str, *, ambiguous: bool, retry_after: float | None = None
    ) -> None:
        self.ambiguous = self.ambiguous or ambiguous
        self.failures += 1
        delay = self.policy.backoff(self.failures, self.rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.policy.max_retry_after))
        if self.failures >= self.policy.max_attempts or delay > self.left():
            raise self._final(error)
        self._count(cause)
        await asyncio.sleep(delay)

    async def _wait_in_flight(self, error: InFlight) -> None:
        now = time.monotonic()
        if self._in_flight_since is None:
            self._in_flight_since = now
        delay = min(error.retry_after or 1.0, self.policy.max_retry_after)
        waited = now - self._in_flight_since
        if waited + delay > self.policy.in_flight_wait or delay > self.left():
            raise error
        self.stats.in_flight_waits += 1
        self._count("in-flight")
        await asyncio.sleep(delay)

    def _count(self, cause: str) -> None:
        self.stats.retries += 1
        self.stats.retry_causes[cause] += 1

    def _final(self, error: Exception) -> BatonError:
        if isinstance(error, BatonError):
            return error
        final = Unavailable(
            f"gave up after {self.failures} attempts in {time.monotonic() - self.started:.1f} s:"
            f" {type(error).__name__}: {error}"
        )
        final.status_code = None  # no answer came: the network failed
        final.__cause__ = error
        return final
