"""The turn driver: every transport opens turns, reads, cancels and closes through it.

A turn is opened in one step (validate and claim, or a refusal) and run in another
(domain/turn.py), so that every refusal is known before a transport commits to a status
line or opens a stream (PROTOCOL section 3). A retry of a turn that committed already is
answered from what the store kept of it (PROTOCOL section 6.4).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import decisions, refusals
from domain.commands import ClaimTurn, CloseSession, ReadSession, RequestCancel, StartSession
from domain.decisions import CancelAnswer
from domain.events import Lease, RequestRefused
from domain.handler import InputCheck, TurnHandler
from domain.identifiers import (
    RandomBytes,
    SessionId,
    digest_token,
    new_session_id,
    parse_session_id,
    unseal_token,
    unseal_under_key,
)
from domain.json import JsonObject
from domain.ports import SessionStore
from domain.recovery import Idempotency, Replay, fingerprint, key_digest
from domain.refusals import PRESENTED_ID_LIMIT, Refusal
from domain.replies import stored_reply
from domain.requests import CancelRequest, CloseRequest, ContinueRequest, ReadRequest, StartRequest
from domain.state import SessionState
from domain.supervision import Timing
from domain.turn import Credentials, OpenTurn, TurnReply

Clock = Callable[[], datetime]
"""Injected time: an aware UTC datetime."""

DAY = 24 * 60 * 60.0


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
    recovery_window: float = DAY  # how long a consumed token recovers its turn (6.2)
    cancel_poll_seconds: float = 2.0  # how often a running turn asks the store (6.5)
    check_input: InputCheck | None = None  # the handler's declared input type, checked
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def lease(self, at: datetime) -> Lease:
        return Lease(self.owner, at + timedelta(seconds=self.lease_seconds))

    def timing(self) -> Timing:
        return Timing(
            beat_seconds=self.lease_seconds / 3,
            timeout_seconds=self.turn_timeout,
            ask_store_seconds=self.cancel_poll_seconds,
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """What a read sees: the session, and, when it recovered its last turn with the token
    that turn consumed, the token that turn issued (PROTOCOL section 6.2)."""

    state: SessionState
    recovered_token: str | None = None


Opened = OpenTurn | TurnReply | Refusal
"""A turn to run, a committed turn's reply given again, or a refusal."""


class TurnDriver:
    def __init__(self, services: TurnServices) -> None:
        self._services = services
        self._store = services.store
        self._clock = services.clock

    async def open_start(self, request: StartRequest) -> Opened:
        at = self._clock()
        refusal = decisions.refuse_start(
            token_presented=request.token is not None,
            session_id_presented=request.session_id is not None,
        )
        if refusal is not None:
            shown = request.session_id[:PRESENTED_ID_LIMIT] if request.session_id else None
            await self._store.refuse(
                decisions.record_refusal(refusal, state=None, presented_id=shown, at=at)
            )
            return refusal
        invalid = await self._refuse_input(request.input, None, at)
        if invalid is not None:
            return invalid
        idempotency = _idempotency(request.key, request)
        command = StartSession(
            session_id=new_session_id(int(at.timestamp() * 1000), self._services.random_bytes),
            at=at,
            input=request.input,
            lease=self._services.lease(at),
            idempotency=idempotency,
            seal_until=self._window_from(at) if idempotency else None,
        )
        opened = await self._store.start(command)
        if isinstance(opened, Refusal):
            return opened
        if isinstance(opened, Replay):
            assert request.key is not None  # noqa: S101 - a replay needs a key to match
            return await self._replay(opened, unseal_under_key, request.key)
        credentials = Credentials(None, request.key, idempotency)
        return OpenTurn(self._services, opened, request.input, credentials)

    async def open_continue(self, request: ContinueRequest) -> Opened:
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        invalid = await self._refuse_input(request.input, session_id, at)
        if invalid is not None:
            return invalid
        idempotency = _idempotency(request.key, request)
        command = ClaimTurn(
            session_id=session_id,
            at=at,
            presented=digest_token(request.token) if request.token else None,
            input=request.input,
            lease=self._services.lease(at),
            idempotency=idempotency,
        )
        opened = await self._store.claim(command)
        if isinstance(opened, Refusal):
            return opened
        if isinstance(opened, Replay):
            assert request.token is not None  # noqa: S101 - a replay needs the consumed token
            return await self._replay(opened, unseal_token, request.token)
        credentials = Credentials(request.token, request.key, idempotency)
        return OpenTurn(self._services, opened, request.input, credentials)

    async def read(self, request: ReadRequest) -> Reading | Refusal:
        """Authorise a read of the session (PROTOCOL sections 6.1 to 6.3)."""
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        presented = digest_token(request.token) if request.token else None
        command = ReadSession(session_id=session_id, at=at, presented=presented, via=request.via)
        access = await self._store.read(command)
        if isinstance(access, Refusal):
            return access
        seal, token = access.recovered, request.token
        recovered = unseal_token(seal.sealed, token) if seal and seal.sealed and token else None
        return Reading(access.state, recovered)

    async def cancel(self, request: CancelRequest) -> CancelAnswer | Refusal:
        """Ask the session's running turn to stop (PROTOCOL section 6.5)."""
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        presented = digest_token(request.token) if request.token else None
        command = RequestCancel(session_id=session_id, at=at, presented=presented)
        return await self._store.request_cancel(command)

    async def close(self, request: CloseRequest) -> SessionState | Refusal:
        """Close a session with its current token (PROTOCOL section 3's `closed`)."""
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        presented = digest_token(request.token) if request.token else None
        return await self._store.close(
            CloseSession(session_id=session_id, at=at, presented=presented)
        )

    async def refuse_in_flight(self, session_id: SessionId) -> Refusal:
        """Refuse a turn for a session whose claim the caller knows is held (a WebSocket
        connection whose own turn is still running), recording it like any refusal."""
        at = self._clock()
        await self._store.refuse(decisions.refusal_for(session_id, refusals.IN_FLIGHT, at))
        return refusals.IN_FLIGHT

    async def _replay(
        self, replay: Replay, unseal: Callable[[str, str], str], secret: str
    ) -> TurnReply:
        assert replay.seal.sealed is not None  # noqa: S101 - only a committed turn replays
        events = await self._store.history(replay.session_id, turn=replay.turn)
        token = unseal(replay.seal.sealed, secret)
        return stored_reply(replay.session_id, replay.turn, events, token)

    def _window_from(self, at: datetime) -> datetime:
        return at + timedelta(seconds=self._services.recovery_window)

    async def _refuse_input(
        self, input: JsonObject, session_id: SessionId | None, at: datetime
    ) -> Refusal | None:
        """Check the input against the handler's declared type before anything is claimed
        (PROTOCOL section 4): a mismatch is refused, and that refusal is all that is kept."""
        check = self._services.check_input
        problem = check(input) if check is not None else None
        if problem is None:
            return None
        refusal = refusals.invalid_input(problem)
        await self._store.refuse(
            RequestRefused(
                session_id=session_id, turn=None, reason=refusal.reason, presented_id=None, at=at
            )
        )
        return refusal

    async def _refuse_unknown(self, text: str, at: datetime) -> Refusal:
        refusal = refusals.unknown_session(text)
        presented = text[:PRESENTED_ID_LIMIT]
        await self._store.refuse(
            decisions.record_refusal(refusal, state=None, presented_id=presented, at=at)
        )
        return refusal


def _idempotency(key: str | None, request: StartRequest | ContinueRequest) -> Idempotency | None:
    return Idempotency(key_digest(key), fingerprint(request.input)) if key else None
