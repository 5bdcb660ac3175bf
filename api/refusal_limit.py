"""A per-client limit on refused requests (opt-in: BATON_REFUSAL_LIMIT per
BATON_REFUSAL_WINDOW seconds), and a pace on the 429s of a client past it
(BATON_REFUSAL_PACE a second).

Every refusal is a durable row, so a loop of junk continues would otherwise grow the event
table, and the store's work, without end. A client is its principal when the turn API
authenticates (api/auth.py), else the address the request came from. Each refusal it gets
is counted in the shared `refusal_budgets` table (one upsert, so every replica sees the same
count); once it reaches the limit, this replica answers that client 429 `too-many-refusals`
with Retry-After until the window ends, before reading or writing anything. Another
replica learns of the block at the client's next refusal there, so across R replicas at
most limit + R - 1 refusals (and those already in flight) are stored per window.

However cheap a 429 is, a client that sends again the moment it is answered would get as
many as the process can make, and the CPU they take is the session owner's. So a blocked
client's 429s are paced: each request waits for the client's next slot, `1 / pace` seconds
after the last one's, holding nothing meanwhile (no database connection, no turn slot, its
body unread), so more connections buy the client more waiting, not more answers. A request
whose slot is further off than MAX_HOLD_SECONDS gets no slot: it is answered at once with
`Connection: close`, so each such answer costs the client a new connection.

A client that is refused nothing is never counted, so an honest client pays nothing.
"""

import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Middleware, Receive, Scope, Send

from baton.api.errors import TOO_MANY_REFUSALS, ApiError, error_body
from baton.api.metrics import Metrics
from baton.api.shutdown import ShutdownGate
from baton.infra.stores import SpendRefusal

# Who the request being answered comes from (set by `identify_clients` on the turn API).
CLIENT: ContextVar[str | None] = ContextVar("baton_client", default=None)
FORGET_AT = 10_000  # blocked clients remembered before the expired ones are dropped
# The longest a blocked client's request is held before its 429. It bounds what one client
# can make the process hold (at most pace x MAX_HOLD_SECONDS + 1 requests at once, whatever
# number of connections it opens) and how long a held answer could delay a graceful shutdown
# that does not let it go (an app served by something other than `baton serve`).
MAX_HOLD_SECONDS = 2.0


def identify_clients(limiter: Callable[[], "RefusalLimiter | None"]) -> Middleware:
    """Middleware (after authentication): name the client each turn API request is from,
    and answer a blocked client's HTTP request here, at its pace.

    A flood of junk from a blocked client is answered here, before its body is read, its
    dependencies resolved or any handler run, and no faster than the client's pace: a 429
    costs a few microseconds of the process's one CPU instead of a trip through the
    framework, and the pace caps how many of them the flood gets, so the flood cannot
    starve the session's owner of that CPU (`make bench`'s flood row measures it). A
    WebSocket upgrade goes on to the handler, unpaced: the socket's frames never pass
    through here, so TurnApi checks the client too and refuses each frame in-band, at once.
    """

    def middleware(app: ASGIApp) -> ASGIApp:
        async def identified(scope: Scope, receive: Receive, send: Send) -> None:
            client = _client_of(scope)
            blocked = limiter()
            if (
                scope["type"] == ScopeType.HTTP
                and blocked is not None
                and client is not None
                and blocked.seconds_left(client) is not None
                and await _refuse_paced(blocked, client, scope, send)
            ):
                return
            token = CLIENT.set(client)
            try:
                await app(scope, receive, send)
            finally:
                CLIENT.reset(token)

        return identified

    return middleware


async def _refuse_paced(limiter: "RefusalLimiter", client: str, scope: Scope, send: Send) -> bool:
    """A blocked client's 429, once its pace allows; False if its block ended while the
    request waited, so the request goes on as anyone's would."""
    kept = await limiter.pace(client)
    left = limiter.seconds_left(client)  # Retry-After: the window's end, as of the answer
    if left is None:
        return False
    await _refuse_at_once(scope, send, left, close=not kept)
    return True


async def _refuse_at_once(scope: Scope, send: Send, left: int, *, close: bool = False) -> None:
    """The 429 the exception handlers would send (api/errors.py), without them."""
    body = error_body(TOO_MANY_REFUSALS, _refused_for(left))
    Metrics.of(scope["app"]).count_error(TOO_MANY_REFUSALS)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(left).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))  # uvicorn closes it once this is sent
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


@dataclass(slots=True)
class _Block:
    # The window's end, on the database's clock: replicas count the window together.
    until: datetime
    # When the client's next 429 may go out, on this process's monotonic clock: pacing is
    # this process's own business, and must not jump when the database clock is corrected.
    next_slot: float = -math.inf


class RefusalLimiter:
    def __init__(
        self,
        spend: SpendRefusal,
        limit: int,
        window_seconds: float,
        clock: Callable[[], datetime],
        *,
        pace: float,
        gate: ShutdownGate | None = None,
        max_hold: float = MAX_HOLD_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not pace > 0:
            raise ValueError(f"the refusal pace must be positive, not {pace}")
        self._spend = spend
        self._limit = limit
        self._window = timedelta(seconds=window_seconds)
        self._clock = clock
        self._interval = 1 / pace
        self._gate = gate if gate is not None else ShutdownGate()
        self._max_hold = max_hold
        self._monotonic = monotonic
        self._blocked: dict[str, _Block] = {}

    def seconds_left(self, client: str) -> int | None:
        """The whole seconds until a blocked client's window ends; None if not blocked."""
        block = self._blocked.get(client)
        if block is None:
            return None
        left = (block.until - self._clock()).total_seconds()
        if left <= 0:
            del self._blocked[client]  # its pace with it: a new block starts a new pace
            return None
        return math.ceil(left)

    async def pace(self, client: str) -> bool:
        """Hold a blocked client's request until its next slot. False if it may not wait
        (its slot is past the max hold, or the replica is shutting down): it is answered at
        once, and its connection closed."""
        if not self._gate.is_open:
            return False  # no new holds once shutdown began (ShutdownGate.let_go)
        block = self._blocked.get(client)
        if block is None:
            return True
        now = self._monotonic()
        slot = max(now, block.next_slot)
        if slot - now > self._max_hold:
            return False
        block.next_slot = slot + self._interval
        return slot <= now or await self._gate.hold(slot - now)

    def check(self) -> None:
        """Refuse at once a client that used up its refusals in this window."""
        client = CLIENT.get()
        left = self.seconds_left(client) if client is not None else None
        if left is None:
            return
        raise ApiError(TOO_MANY_REFUSALS, _refused_for(left), headers={"Retry-After": str(left)})

    async def spent(self) -> None:
        """Count a refusal the client just got; block the client once it reaches the limit."""
        client = CLIENT.get()
        if client is None:
            return
        at = self._clock()
        refused, window_end = await self._spend(client, at, at + self._window)
        if refused < self._limit:
            return
        block = self._blocked.get(client)
        if block is not None:  # already blocked (a refusal that was in flight): keep its pace
            block.until = window_end
            return
        if len(self._blocked) >= FORGET_AT:
            self._forget_expired(at)
        self._blocked[client] = _Block(window_end)

    def _forget_expired(self, now: datetime) -> None:
        for client in [client for client, block in self._blocked.items() if block.until <= now]:
            del self._blocked[client]
