"""The turn driver: validate, claim, run, commit or release. Every transport calls this.

A turn is opened in one step and run in another, so that every refusal is known before a
transport commits to a status line or opens a stream (PROTOCOL section 3).
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import decisions, refusals
from domain.events import CloseCause, Lease, ReleaseCause
from domain.handler import Turn, TurnHandler, TurnSink
from domain.identifiers import (
    RandomBytes,
    SessionId,
    digest_token,
    mint_token,
    new_session_id,
    parse_session_id,
    seal_token,
)
from domain.json import JsonObject, JsonValue, is_json
from domain.outcomes import KEEP, Contended, Finished, HandlerOutcome, Parked, TurnOutcome
from domain.ports import ClaimGranted, SessionStore, StoreUnavailable
from domain.refusals import PRESENTED_ID_LIMIT, Refusal
from domain.state import SessionState

Clock = Callable[[], datetime]
"""Injected time: an aware UTC datetime."""


@dataclass(frozen=True, slots=True)
class StartRequest:
    input: JsonObject
    token: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ContinueRequest:
    session_id: str
    input: JsonObject
    token: str | None


@dataclass(frozen=True, slots=True)
class CloseRequest:
    session_id: str
    token: str | None


@dataclass(frozen=True, slots=True)
class TurnReply:
    """A turn that ran to an outcome; `token` is None only when nothing committed."""

    session_id: SessionId
    turn: int
    outcome: TurnOutcome
    token: str | None
    seq: int | None  # the committed outcome's seq in the session
    records: list[JsonValue]


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """The handler raised: nothing committed and the presented token stays valid."""

    session_id: SessionId
    turn: int
    message: str


class _TimedOut(Exception):
    """The turn ran past the turn timeout."""


async def _stop(handler: "asyncio.Future[HandlerOutcome]") -> None:
    """Cancel the handler and give it a moment to unwind before its claim is released."""
    handler.cancel()
    await asyncio.wait({handler}, timeout=1.0)


class ClaimLost(Exception):
    """Raised into a handler whose claim was taken over; its turn can no longer commit."""

    def __init__(self, contended: Contended) -> None:
        super().__init__(f"the session moved on to version {contended.current}")
        self.contended = contended


@dataclass(frozen=True, slots=True)
class TurnServices:
    """What running turns needs from outside the domain, injected at start-up."""

    store: SessionStore
    handler: TurnHandler
    clock: Clock
    random_bytes: RandomBytes
    owner: str = "baton"  # this process, as claims name it
    lease_seconds: float = 30.0  # a claim lapses this long after its last renewal
    turn_timeout: float = 300.0  # a turn running longer is cancelled and released
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def lease(self, at: datetime) -> Lease:
        return Lease(self.owner, at + timedelta(seconds=self.lease_seconds))


class TurnDriver:
    def __init__(self, services: TurnServices) -> None:
        self._services = services
        self._store = services.store
        self._clock = services.clock

    async def open_start(self, request: StartRequest) -> "OpenTurn | Refusal":
        at = self._clock()
        refusal = decisions.refuse_start(
            token_presented=bool(request.token),  # "" counts as absent (PROTOCOL section 4)
            session_id_presented=bool(request.session_id),
        )
        if refusal is not None:
            shown = request.session_id[:PRESENTED_ID_LIMIT] if request.session_id else None
            await self._store.refuse(
                decisions.record_refusal(refusal, state=None, presented_id=shown, at=at)
            )
            return refusal
        unix_ms = int(at.timestamp() * 1000)
        started = decisions.start_session(
            new_session_id(unix_ms, self._services.random_bytes),
            request.input,
            at,
            self._services.lease(at),
        )
        granted = await self._store.start(started)
        return OpenTurn(self._services, granted, request.input, presented=None)

    async def open_continue(self, request: ContinueRequest) -> "OpenTurn | Refusal":
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        token = request.token or None  # "" counts as absent (PROTOCOL section 4)
        presented_digest = digest_token(token) if token else None
        granted = await self._store.claim(
            session_id, presented_digest, request.input, at, self._services.lease(at)
        )
        if isinstance(granted, Refusal):
            return granted
        return OpenTurn(self._services, granted, request.input, presented=token)

    async def close(self, request: CloseRequest) -> SessionState | Refusal:
        """Close a session with its current token (PROTOCOL section 3's `closed`)."""
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        token = request.token or None
        presented = digest_token(token) if token else None
        return await self._store.close_session(session_id, presented, at)

    async def _refuse_unknown(self, text: str, at: datetime) -> Refusal:
        refusal = refusals.unknown_session(text)
        presented = text[:PRESENTED_ID_LIMIT]
        await self._store.refuse(
            decisions.record_refusal(refusal, state=None, presented_id=presented, at=at)
        )
        return refusal

    async def refuse_in_flight(self, session_id: SessionId) -> Refusal:
        """Refuse a turn for a session whose claim the caller knows is held (a WebSocket
        connection whose own turn is still running), recording it like any refusal."""
        at = self._clock()
        await self._store.refuse(decisions.refusal_for(session_id, refusals.IN_FLIGHT, at))
        return refusals.IN_FLIGHT


def _failure_message(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _check_outcome(outcome: object) -> HandlerOutcome:
    if not isinstance(outcome, Finished | Parked):
        raise TypeError(f"a turn handler must return Finished or Parked, not {outcome!r}")
    payload = outcome.output if isinstance(outcome, Finished) else outcome.wait
    state_ok = outcome.state is KEEP or is_json(outcome.state)
    if not is_json(payload) or not state_ok:
        raise TypeError("a turn's output, wait and state must be JSON values")
    return outcome


class OpenTurn:
    """A claimed turn, ready to run once the transport is ready to carry it."""

    def __init__(
        self,
        services: TurnServices,
        granted: ClaimGranted,
        input: JsonObject,
        *,
        presented: str | None,
    ) -> None:
        self._services = services
        self._granted = granted
        self._input = input
        # The token that won the claim, kept in memory only, to seal the next one under it;
        # None for a start, whose failure also closes the session.
        self._presented = presented
        self._starting = presented is None
        self._lost: Contended | None = None  # set by the heartbeat if the claim was taken
        self.session_id = granted.state.session_id
        self.number = granted.event.turn

    async def run(self, sink: TurnSink) -> TurnReply | TurnFailed:
        """Run the handler under its lease and timeout, then commit its outcome or release."""
        records: list[JsonValue] = []
        turn = Turn(
            self.session_id,
            self.number,
            self._input,
            self._granted.state.state,
            self._appender(records, sink),
            sink.delta,
        )
        handler = asyncio.ensure_future(self._services.handler(turn))
        keeper = asyncio.ensure_future(self._keep_claim(handler))
        try:
            outcome = await self._outcome_of(handler)
        except ClaimLost as lost:
            return self._reply(lost.contended, None, None, [])  # its records are void
        except _TimedOut:
            await _stop(handler)
            message = f"the turn ran past its {self._services.turn_timeout:g} s timeout"
            await self._release(ReleaseCause.TIMED_OUT, message)
            return TurnFailed(self.session_id, self.number, message)
        except asyncio.CancelledError:
            await _stop(handler)
            await self._release(ReleaseCause.CANCELLED, "the turn was cancelled")
            raise
        except Exception as error:  # the application's failure, reported in-band
            message = _failure_message(error)
            await self._release(ReleaseCause.FAILED, message)
            return TurnFailed(self.session_id, self.number, message)
        finally:
            keeper.cancel()
            handler.cancel()  # a no-op once it is done
        return await self._commit(outcome, records)

    def _appender(
        self, records: list[JsonValue], sink: TurnSink
    ) -> Callable[[JsonValue], Awaitable[None]]:
        store, clock, claim = self._services.store, self._services.clock, self._granted.claim

        async def append(record: JsonValue) -> None:
            if not is_json(record):
                raise TypeError("a record must be a JSON value")
            appended = await store.append_record(self.session_id, claim, record, clock())
            if isinstance(appended, Contended):
                raise ClaimLost(appended)
            records.append(record)
            await sink.record(appended.seq, record)

        return append

    async def _outcome_of(self, handler: "asyncio.Future[HandlerOutcome]") -> HandlerOutcome:
        deadline = asyncio.timeout(self._services.turn_timeout)
        try:
            async with deadline:
                result = await handler
        except TimeoutError:
            if deadline.expired():
                raise _TimedOut from None
            raise  # the handler's own TimeoutError: a failure like any other
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._lost is not None and current is not None and not current.cancelling():
                raise ClaimLost(self._lost) from None  # the keeper cancelled the handler
            raise
        return _check_outcome(result)

    async def _keep_claim(self, handler: "asyncio.Future[HandlerOutcome]") -> None:
        """The heartbeat: renew the lease well before it lapses; if the session was taken
        over meanwhile, stop the handler, since its turn can no longer commit."""
        services = self._services
        while True:
            await services.sleep(services.lease_seconds / 3)
            at = services.clock()
            try:
                renewed = await services.store.renew(
                    self.session_id, self._granted.claim, services.lease(at), at
                )
            except StoreUnavailable:
                continue  # the next beat tries again; the commit checks the claim anyway
            if isinstance(renewed, Contended):
                self._lost = renewed
                handler.cancel()
                return

    async def _commit(self, outcome: HandlerOutcome, records: list[JsonValue]) -> TurnReply:
        token = mint_token(self._services.random_bytes)
        sealed = seal_token(token, self._presented) if self._presented else None
        try:
            committed = await self._services.store.commit(
                self.session_id,
                self._granted.claim,
                outcome,
                digest_token(token),
                self._services.clock(),
                consumed=digest_token(self._presented) if self._presented else None,
                sealed=sealed,
            )
        except BaseException:
            # Whether or not the commit landed, releasing is safe: after a landed commit the
            # claim is gone and the release does nothing. Without it, a commit that failed
            # would leave the session in flight with nobody to end the turn.
            with contextlib.suppress(Exception):
                await self._release(ReleaseCause.FAILED, "the commit did not complete")
            raise
        if isinstance(committed, Contended):
            return self._reply(committed, None, None, [])
        return self._reply(outcome, token, committed.seq, records)

    async def _release(self, cause: ReleaseCause, error: str) -> None:
        await self._services.store.release(
            self.session_id,
            self._granted.claim,
            cause,
            error,
            self._services.clock(),
            close=CloseCause.START_FAILED if self._starting else None,
        )

    def _reply(
        self, outcome: TurnOutcome, token: str | None, seq: int | None, records: list[JsonValue]
    ) -> TurnReply:
        return TurnReply(self.session_id, self.number, outcome, token, seq, records)
