"""The turn driver: every transport opens turns, reads, cancels and closes through it.

A turn is opened in one step (validate and claim, or a refusal) and run in another
(domain/turn.py), so that every refusal is known before a transport commits to a status
line or opens a stream (PROTOCOL section 3). A retry of a turn that committed already is
answered from what the store kept of it (PROTOCOL section 6.4).
"""

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from baton.domain import decisions, refusals
from baton.domain.commands import ClaimTurn, CloseSession, ReadSession, RequestCancel, StartSession
from baton.domain.decisions import CancelAnswer
from baton.domain.events import Lease, RequestRefused, SessionEvent
from baton.domain.handler import InputCheck, TurnHandler
from baton.domain.identifiers import (
    RandomBytes,
    SessionId,
    digest_token,
    new_session_id,
    parse_session_id,
    unseal_token,
    unseal_under_key,
)
from baton.domain.json import JsonObject
from baton.domain.ports import SessionStore
from baton.domain.principals import visible_to
from baton.domain.recovery import Idempotency, Replay, fingerprint, key_digest
from baton.domain.refusals import PRESENTED_ID_LIMIT, Refusal
from baton.domain.replies import stored_reply
from baton.domain.requests import (
    CancelRequest,
    CloseRequest,
    ContinueRequest,
    ReadRequest,
    StartRequest,
)
from baton.domain.state import SessionState
from baton.domain.supervision import Timing
from baton.domain.turn import Credentials, OpenTurn, TurnReply
from baton.domain.values import value

Clock = Callable[[], datetime]
"""Injected time: an aware UTC datetime."""

DAY = 24 * 60 * 60.0


@value
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

    def lease(self, at: datetime) -> Lease:
        return Lease(self.owner, at + timedelta(seconds=self.lease_seconds))

    def timing(self) -> Timing:
        return Timing(
            beat_seconds=self.lease_seconds / 3,
            timeout_seconds=self.turn_timeout,
            ask_store_seconds=self.cancel_poll_seconds,
        )


@value
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
                decisions.record_refusal(
                    refusal, state=None, presented_id=shown, at=at, principal=request.principal
                )
            )
            return refusal
        problem = self._input_problem(request.input)
        if problem is not None:
            return await self._refuse_input(problem, None, request.principal, at)
        idempotency = _idempotency(request.key, request)
        command = StartSession(
            session_id=new_session_id(int(at.timestamp() * 1000), self._services.random_bytes),
            at=at,
            input=request.input,
            lease=self._services.lease(at),
            idempotency=idempotency,
            seal_until=self._window_from(at) if idempotency else None,
            principal=request.principal,
        )
        opened = await self._store.start(command)
        if isinstance(opened, Refusal):
            return opened
        if isinstance(opened, Replay):
            assert request.key is not None  # noqa: S101 - a replay needs a key to match
            return await self._replay(opened, unseal_under_key, request.key)
        credentials = Credentials(None, request.key, idempotency, request.principal)
        return OpenTurn(self._services, opened, request.input, credentials)

    async def open_continue(self, request: ContinueRequest) -> Opened:
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, request.principal, at)
        problem = self._input_problem(request.input)
        if problem is not None:
            return await self._refuse_input(problem, session_id, request.principal, at)
        idempotency = _idempotency(request.key, request)
        credentials = Credentials(request.token, request.key, idempotency, request.principal)
        command = ClaimTurn(
            session_id=session_id,
            at=at,
            presented=credentials.consumed,
            input=request.input,
            lease=self._services.lease(at),
            idempotency=idempotency,
            principal=request.principal,
        )
        opened = await self._store.claim(command)
        if isinstance(opened, Refusal):
            return opened
        if isinstance(opened, Replay):
            assert request.token is not None  # noqa: S101 - a replay needs the consumed token
            return await self._replay(opened, unseal_token, request.token)
        return OpenTurn(self._services, opened, request.input, credentials)

    async def read(self, request: ReadRequest) -> Reading | Refusal:
        """Authorise a read of the session (PROTOCOL sections 6.1 to 6.3)."""
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, request.principal, at)
        presented = digest_token(request.token) if request.token else None
        command = ReadSession(
            session_id=session_id,
            at=at,
            presented=presented,
            via=request.via,
            principal=request.principal,
        )
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
            return await self._refuse_unknown(request.session_id, request.principal, at)
        presented = digest_token(request.token) if request.token else None
        command = RequestCancel(
            session_id=session_id, at=at, presented=presented, principal=request.principal
        )
        return await self._store.request_cancel(command)

    async def close(self, request: CloseRequest) -> SessionState | Refusal:
        """Close a session with its current token (PROTOCOL section 3's `closed`)."""
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, request.principal, at)
        presented = digest_token(request.token) if request.token else None
        return await self._store.close(
            CloseSession(
                session_id=session_id, at=at, presented=presented, principal=request.principal
            )
        )

    async def refuse_in_flight(
        self, session_id: SessionId, principal: str | None = None
    ) -> Refusal:
        """Refuse a turn for a session whose claim the caller knows is held (a WebSocket
        connection whose own turn is still running), recording it like any refusal."""
        at = self._clock()
        refused = decisions.refusal_for(session_id, refusals.IN_FLIGHT, at, principal)
        await self._store.refuse(refused)
        return refusals.IN_FLIGHT

    async def _replay(
        self, replay: Replay, unseal: Callable[[str, str], str], secret: str
    ) -> TurnReply:
        assert replay.seal.sealed is not None  # noqa: S101 - only a committed turn replays
        events: Sequence[SessionEvent] | None = replay.events
        if events is None:
            events = await self._store.history(replay.session_id, turn=replay.turn)
        token = unseal(replay.seal.sealed, secret)
        return stored_reply(replay.session_id, replay.turn, events, token)

    def _window_from(self, at: datetime) -> datetime:
        return at + timedelta(seconds=self._services.recovery_window)

    def _input_problem(self, input: JsonObject) -> str | None:
        """What is wrong with the input by the handler's declared type, if anything."""
        check = self._services.check_input
        return check(input) if check is not None else None

    async def _refuse_input(
        self, problem: str, session_id: SessionId | None, principal: str | None, at: datetime
    ) -> Refusal:
        """Refuse input that does not match the handler's declared type, before anything is
        claimed (PROTOCOL section 4): that refusal is all that is kept. A continue's session
        must exist for its principal first (section 3's order): an unknown or foreign one is
        unknown-session, whatever the input (a read only on this error path)."""
        if session_id is not None:
            state = visible_to(await self._store.load(session_id), principal)
            if state is None:
                return await self._refuse_unknown(session_id, principal, at)
        refusal = refusals.invalid_input(problem)
        await self._store.refuse(
            RequestRefused(
                session_id=session_id,
                turn=None,
                reason=refusal.reason,
                presented_id=None,
                at=at,
                principal=principal,
            )
        )
        return refusal

    async def _refuse_unknown(self, text: str, principal: str | None, at: datetime) -> Refusal:
        refusal = refusals.unknown_session(text)
        presented = text[:PRESENTED_ID_LIMIT]
        await self._store.refuse(
            decisions.record_refusal(
                refusal, state=None, presented_id=presented, at=at, principal=principal
            )
        )
        return refusal


def _idempotency(key: str | None, request: StartRequest | ContinueRequest) -> Idempotency | None:
    if not key:
        return None
    return Idempotency(key_digest(key, request.principal), fingerprint(request.input))
