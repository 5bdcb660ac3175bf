"""A per-client limit on refused requests (opt-in: BATON_REFUSAL_LIMIT per
BATON_REFUSAL_WINDOW seconds).

Every refusal is a durable row, so a loop of junk continues would otherwise grow the event
table, and the store's work, without end. A client is its principal when the turn API
authenticates (api/auth.py), else the address the request came from. Each refusal it gets
is counted in the shared `refusal_budgets` table (one upsert, so every replica sees the same
count); once it reaches the limit, this replica answers that client 429 `too-many-refusals`
with Retry-After until the window ends, before reading or writing anything. Another
replica learns of the block at the client's next refusal there, so across R replicas at
most limit + R - 1 refusals (and those already in flight) are stored per window.

A client that is refused nothing is never counted, so an honest client pays nothing.
"""

import math
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Middleware, Receive, Scope, Send

from baton.api.errors import TOO_MANY_REFUSALS, ApiError, error_body
from baton.api.metrics import Metrics
from baton.infra.stores import SpendRefusal

# Who the request being answered comes from (set by `identify_clients` on the turn API).
CLIENT: ContextVar[str | None] = ContextVar("baton_client", default=None)
FORGET_AT = 10_000  # blocked clients remembered before the expired ones are dropped


def identify_clients(limiter: Callable[[], "RefusalLimiter | None"]) -> Middleware:
    """Middleware (after authentication): name the client each turn API request is from,
    and answer a blocked client's HTTP request at once.

    A flood of junk from a blocked client is answered here, before its body is read, its
    dependencies resolved or any handler run: a 429 costs a few microseconds of the
    process's one CPU instead of a trip through the framework, so the flood cannot starve
    the session's owner of that CPU (`make bench`'s flood row measures it). A WebSocket
    upgrade goes on to the handler, which refuses it in-band (TurnApi checks the client
    too).
    """

    def middleware(app: ASGIApp) -> ASGIApp:
        async def identified(scope: Scope, receive: Receive, send: Send) -> None:
            client = _client_of(scope)
            blocked = limiter()
            if scope["type"] == ScopeType.HTTP and blocked is not None and client is not None:
                left = blocked.seconds_left(client)
                if left is not None:
                    await _refuse_at_once(scope, send, left)
                    return
            token = CLIENT.set(client)
            try:
                await app(scope, receive, send)
            finally:
                CLIENT.reset(token)

        return identified

    return middleware


async def _refuse_at_once(scope: Scope, send: Send, left: int) -> None:
    """The 429 the exception handlers would send (api/errors.py), without them."""
    body = error_body(TOO_MANY_REFUSALS, _refused_for(left))
    Metrics.of(scope["app"]).count_error(TOO_MANY_REFUSALS)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(left).encode()),
    ]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 429,
        "headers": headers,
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _refused_for(left: int) -> str:
    return f"too many refused requests from this client; retry in {left} s"


def _client_of(scope: Scope) -> str | None:
    principal: Any = scope.get("user")
    if isinstance(principal, str):
        return principal
    address = scope.get("client")
    return f"address:{address[0]}" if address else None


class RefusalLimiter:
    def __init__(
        self,
        spend: SpendRefusal,
        limit: int,
        window_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._spend = spend
        self._limit = limit
        self._window = timedelta(seconds=window_seconds)
        self._clock = clock
        self._blocked: dict[str, datetime] = {}  # client -> until

    def seconds_left(self, client: str) -> int | None:
        """The whole seconds until a blocked client's window ends; None if not blocked."""
        until = self._blocked.get(client)
        if until is None:
            return None
        left = (until - self._clock()).total_seconds()
        if left <= 0:
            del self._blocked[client]
            return None
        return math.ceil(left)

    def check(self) -> None:
        """Refuse at once a client that used up its refusals in this window."""
        client = CLIENT.get()
        left = self.seconds_left(client) if client is not None else None
        if left is None:
            return
        raise ApiError(
            TOO_MANY_REFUSALS,
            _refused_for(left),
            headers={"Retry-After": str(left)},
        )

    async def spent(self) -> None:
        """Count a refusal the client just got; block the client once it reaches the limit."""
        client = CLIENT.get()
        if client is None:
            return
        at = self._clock()
        refused, window_end = await self._spend(client, at, at + self._window)
        if refused >= self._limit:
            if len(self._blocked) >= FORGET_AT:
                self._forget_expired(at)
            self._blocked[client] = window_end

    def _forget_expired(self, now: datetime) -> None:
        for client in [client for client, until in self._blocked.items() if until <= now]:
            del self._blocked[client]
