"""The one object every transport turns to: open a turn, read, follow, cancel, close.

A transport reads a request off the wire, calls one method here and frames the answer
(api/wire.py): a refusal, known before anything is sent; a live turn that already runs in
a task of its own; a committed turn's reply given again to a retry; or what a read sees.
It never reaches the driver, the runner or the shutdown gate itself.
"""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import field
from functools import partial
from typing import TypeVar

from baton.api.follow import Following, Lapsed
from baton.api.instruments import Instruments, TurnWatch
from baton.api.live import LiveTurn, TurnRunner
from baton.api.metrics import REST
from baton.api.refusal_limit import RefusalLimiter
from baton.api.shutdown import ShutdownGate
from baton.api.wire import RecoveredTurn
from baton.domain.decisions import CancelAnswer
from baton.domain.driver import Reading, TurnDriver
from baton.domain.events import RecoveredVia, SessionEvent, TurnCommitted
from baton.domain.identifiers import SessionId
from baton.domain.refusals import Refusal
from baton.domain.requests import (
    CancelRequest,
    CloseRequest,
    ContinueRequest,
    ReadRequest,
    StartRequest,
)
from baton.domain.state import SessionState
from baton.domain.turn import OpenTurn, TurnReply
from baton.domain.values import value
from baton.infra.notifier import changed_within

Opened = LiveTurn | TurnReply | Refusal
A = TypeVar("A")


def _recovered(reading: Reading) -> RecoveredTurn | None:
    token = reading.recovered_token
    return RecoveredTurn(reading.state.turn, token) if token is not None else None


def _commits(batch: list[SessionEvent], turn: int) -> bool:
    return any(isinstance(event, TurnCommitted) and event.turn == turn for event in batch)


@value
class EventsView:
    """A session's events a client may read: how to get them, and the recovered turn's
    token when the read recovered it (PROTOCOL sections 6.2 and 6.3)."""

    session: SessionState  # as the read loaded it
    recovered: RecoveredTurn | None
    following: Following
    recover: Callable[[], Awaitable[RecoveredTurn | None]]  # read again with the token

    @property
    def session_id(self) -> SessionId:
        return self.session.session_id

    @property
    def settled(self) -> bool:
        """Nothing was in flight when the read loaded the session: its stored events are
        all that following it gives (Following.follow)."""
        return self.session.claim is None

    async def replay(self, after: int) -> list[SessionEvent]:
        return await self.following.replay(self.session_id, after)

    async def follow(
        self, after: int
    ) -> AsyncIterator[tuple[list[SessionEvent], RecoveredTurn | None] | Lapsed]:
        """The events as Following gives them, each batch with the recovered turn its
        outcome names. A client that lost a turn's stream resumes it with the token that
        turn is consuming; once the turn commits, that token recovers the one it issued,
        so the outcome the stream ends with carries it, as a read would (PROTOCOL 6.2)."""
        running = self.session.claim
        async for batch in self.following.follow(self.session, after):
            if isinstance(batch, Lapsed):
                yield batch
                return
            recovered = self.recovered
            if recovered is None and running is not None and _commits(batch, running.turn):
                recovered = await self.recover()
            yield batch, recovered


@value
class TurnApi:
    """One dependency for every transport: Litestar resolves a lone dependency inline,
    while two at one level cost an anyio TaskGroup per request."""

    driver: TurnDriver
    runner: TurnRunner
    gate: ShutdownGate
    following: Following
    ping_seconds: float = 15.0  # an SSE stream's keep-alive interval
    limiter: RefusalLimiter | None = None  # BATON_REFUSAL_LIMIT (api/refusal_limit.py)
    instruments: Instruments = field(default_factory=Instruments)  # metrics and traces
    prefix: str = "/v1"  # where the turn API is mounted (BatonConfig.path)
    max_frame_bytes: int = 1024 * 1024  # a larger WebSocket frame closes it (1009)

    async def start(self, request: StartRequest, transport: str = REST) -> Opened:
        """Start a session and run its first turn (a replica shutting down refuses: 503)."""
        self.gate.check()
        self._check_client()
        with self.runner.admission(), self.instruments.watch(transport) as watch:
            opened = await self.driver.open_start(request)
            return await self._counted(self._launched(opened, watch))

    async def proceed(self, request: ContinueRequest, transport: str = REST) -> Opened:
        """Validate and claim the next turn, then run it (`transport` is for metrics)."""
        self.gate.check()
        self._check_client()
        with self.runner.admission(), self.instruments.watch(transport) as watch:
            opened = await self.driver.open_continue(request)
            return await self._counted(self._launched(opened, watch))

    async def read(self, request: ReadRequest) -> Reading | Refusal:
        self._check_client()
        reading = await self._counted(await self.driver.read(request))
        if not isinstance(reading, Refusal) and reading.recovered_token is not None:
            self.instruments.recovered(RecoveredVia.READ)
        return reading

    async def events(self, request: ReadRequest) -> EventsView | Refusal:
        """Authorise a read of the session's events (with the token it consumed, its last
        turn's outcome then carries the token that turn issued)."""
        self._check_client()
        reading = await self.driver.read(
            ReadRequest(request.session_id, request.token, RecoveredVia.EVENTS, request.principal)
        )
        if isinstance(reading, Refusal):
            return await self._counted(reading)
        if reading.recovered_token is not None:
            self.instruments.recovered(RecoveredVia.EVENTS)
        return EventsView(
            reading.state, _recovered(reading), self.following, partial(self._recover, request)
        )

    async def _recover(self, request: ReadRequest) -> RecoveredTurn | None:
        reading = await self.driver.read(
            ReadRequest(request.session_id, request.token, RecoveredVia.EVENTS, request.principal)
        )
        if isinstance(reading, Refusal):
            return None
        if reading.recovered_token is not None:
            self.instruments.recovered(RecoveredVia.EVENTS)
        return _recovered(reading)

    async def cancel(
        self, request: CancelRequest, wait_seconds: float
    ) -> tuple[SessionState, bool] | Refusal:
        """Ask the running turn to stop and wait up to `wait_seconds` for its release:
        the session, and whether the turn has stopped (PROTOCOL section 6.5)."""
        self._check_client()
        answer = await self.driver.cancel(request)
        if isinstance(answer, Refusal):
            return await self._counted(answer)
        if not answer.pending:
            return answer.state, True
        self.runner.cancel(answer.state.session_id)  # at once, if it runs here
        return await self._stopped(answer, wait_seconds)

    async def _stopped(
        self, answer: CancelAnswer, wait_seconds: float
    ) -> tuple[SessionState, bool]:
        session_id, claim = answer.state.session_id, answer.state.claim
        with self.following.notifier.watching(session_id) as changed:
            deadline = _Deadline(wait_seconds)
            while True:
                changed.clear()
                state = await self.following.store.load(session_id)
                if state is None or state.claim != claim:
                    return (state or answer.state), True
                if deadline.passed():
                    return state, False
                await changed_within(changed, min(self.following.poll_seconds, deadline.left()))

    async def close(self, request: CloseRequest) -> SessionState | Refusal:
        self._check_client()
        return await self._counted(await self.driver.close(request))

    async def refuse_in_flight(
        self, session_id: SessionId, principal: str | None = None
    ) -> Refusal:
        """A turn refused because the caller knows its session's claim is held."""
        self._check_client()
        return await self._counted(await self.driver.refuse_in_flight(session_id, principal))

    def _check_client(self) -> None:
        """A client past its refusal limit is answered 429 before anything is read."""
        if self.limiter is not None:
            self.limiter.check()

    async def _counted(self, answer: A) -> A:
        """Count a refusal (a stored row) in the metrics and against the client's limit."""
        if isinstance(answer, Refusal):
            self.instruments.refused(answer)
            if self.limiter is not None:
                await self.limiter.spent()
        return answer

    def _launched(self, opened: OpenTurn | TurnReply | Refusal, watch: TurnWatch) -> Opened:
        if isinstance(opened, OpenTurn):
            return self.runner.launch(opened, watch)
        watch.answered(opened)
        return opened


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._until = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self._until

    def left(self) -> float:
        return max(0.0, self._until - time.monotonic())
