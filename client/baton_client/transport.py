"""HTTP plumbing under the session logic: requests retried by the policy, error answers turned
into exceptions, and SSE messages decoded into event objects."""

import json
import random
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_sse import EventSource

from baton_client.errors import BatonError, error_for, error_from_response
from baton_client.models import RecoveryStats
from baton_client.retry import Attempts, RetryPolicy

EVENT_STREAM = "text/event-stream"
TOKEN_HEADER = "X-Continuation-Token"
KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Each in-band error's status as a buffered answer (errors.py: in-band errors carry it).
IN_BAND_STATUS = {"turn-failed": 500, "internal-error": 500, "cancelled": 409, "unavailable": 503}


class Transport:
    def __init__(self, http: httpx.AsyncClient, policy: RetryPolicy, stats: RecoveryStats) -> None:
        self.http = http
        self.policy = policy
        self.stats = stats
        self._rng = random.SystemRandom()

    def attempts(self) -> Attempts:
        return Attempts(self.policy, self.stats, self._rng)

    async def call(
        self,
        method: str,
        url: str,
        *,
        attempts: Attempts | None = None,
        ok: Collection[int] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send until the answer is neither a network failure nor a 503 nor `in-flight`
        (within the policy): return it if its status is `ok`, else raise its exception."""
        attempts = attempts or self.attempts()
        while True:
            try:
                response = await self.http.request(method, url, **kwargs)
                if response.status_code in ok:
                    return response
                raise error_from_response(response)
            except Exception as error:  # absorb() re-raises whatever is final
                await attempts.absorb(error)

    @asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """One streamed request: the response if it is a 200, else its exception."""
        async with self.http.stream(method, url, **kwargs) as response:
            if response.status_code != 200:
                await response.aread()
                raise error_from_response(response)
            yield response


async def sse_objects(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
    """(last event id, event object) per SSE message; the object is None for a message without
    data, such as the priming message every stream begins with."""
    async for message in EventSource(response).aiter_sse():
        if not message.data:
            yield message.id, None
            continue
        body = json.loads(message.data)
        yield message.id, body if isinstance(body, dict) else None


def in_band_error(body: dict[str, Any]) -> BatonError:
    """The exception an SSE `error` event stands for."""
    reason = str(body.get("reason", "error"))
    return error_for(reason, str(body.get("message", "")), IN_BAND_STATUS.get(reason))


def replayed(response: httpx.Response) -> bool:
    return str(response.headers.get(REPLAYED_HEADER, "")).lower() == "true"
