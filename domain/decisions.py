"""The decisions: given a session's state and a command, which facts, or which refusal.

Each is a plain function so every rule can be tested in microseconds. A store calls them
(through `Command.decide`) inside the transaction that holds the session's row, which makes
"validate and claim" one atomic step across processes, and writes what they return: the
events and the state they fold into, a fact without a seq (a refusal, a recovery), and the
seals recovery keeps (domain/recovery.py). The decisions of a running turn's claim holder
are in domain/holding.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from baton.domain import refusals
from baton.domain.events import (
    ClaimExpired,
    RecoveredVia,
    RequestRefused,
    SessionEvent,
    SessionStarted,
    SideEvent,
    TurnClaimed,
)
from baton.domain.identifiers import SessionId, TokenDigest
from baton.domain.principals import visible_to
from baton.domain.recovery import (
    Forget,
    Replay,
    Seal,
    recovered,
    replay_or_refuse,
    replay_start,
)
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.state import Claim, SessionState, SessionStatus, fold
from baton.domain.values import value

if TYPE_CHECKING:  # the commands call these functions; the import runs the other way
    from baton.domain.commands import (
        ClaimTurn,
        Command,
        StartSession,
    )

FIRST_TURN = 1
A = TypeVar("A", covariant=True)
T = TypeVar("T")


@value
class Decision(Generic[A]):
    """What a command does to a session: the events to append and the state they fold into,
    a fact that takes no seq (a refusal, a recovery), the seals to keep or forget, and what
    the caller is answered."""

    answer: A
    events: tuple[SessionEvent, ...] = ()
    after: SessionState | None = None  # fold(events, state); None when nothing changes
    side_event: SideEvent | None = None
    seal: Seal | None = None  # kept (replacing any seal of the same lookup)
    forget: Forget | None = None  # the session's seals erased


@value
class ClaimGranted:
    """A claim that landed, with the session's state right after it."""

    event: SessionStarted | TurnClaimed
    state: SessionState
    took_over: bool = False  # the claim of a turn whose lease had lapsed expired first

    @property
    def claim(self) -> Claim:
        return Claim(turn=self.event.turn, seq=self.event.seq)


@value
class CancelAnswer:
    """The session after a cancel request; `pending` while its turn has yet to stop."""

    state: SessionState
    pending: bool


def changed(answer: T, events: tuple[SessionEvent, ...], state: SessionState | None) -> Decision[T]:
    return Decision(answer, events, fold(events, state))


def refused(
    refusal: Refusal,
    state: SessionState | None,
    session_id: str,
    at: datetime,
    principal: str | None = None,
) -> Decision[Refusal]:
    recorded = record_refusal(
        refusal, state=state, presented_id=session_id, at=at, principal=principal
    )
    return Decision(refusal, side_event=recorded)


# --------------------------------------------------------------- starting and claiming


def start_session(
    command: StartSession, state: SessionState | None, seal: Seal | None
) -> Decision[ClaimGranted | Replay | Refusal]:
    """A new session (its start is also the claim of turn 1), unless the start's
    Idempotency-Key started one already within the window (PROTOCOL section 6.4)."""
    key = command.idempotency
    if key is not None and seal is not None and command.at < seal.expires_at:
        answer = replay_start(key, seal, state, command.at)
        if isinstance(answer, Refusal):
            return refused(answer, state, seal.session_id, command.at, command.principal)
        replayed = recovered(seal, RecoveredVia.REPLAY, command.at, command.principal)
        return Decision(answer, side_event=replayed)
    if state is not None and state.session_id == command.session_id:
        raise ValueError(f"session {command.session_id} already exists")
    # Otherwise `state` is the session an expired key once started: nothing to do with this.
    started = SessionStarted(
        session_id=command.session_id,
        seq=1,
        turn=FIRST_TURN,
        input=command.input,
        lease=command.lease,
        at=command.at,
        principal=command.principal,
    )
    after = fold([started])
    kept = None
    if key is not None and command.seal_until is not None:
        kept = Seal(
            lookup=key.key,
            session_id=command.session_id,
            turn=FIRST_TURN,
            sealed=None,  # until the first turn commits
            idempotency=key,
            expires_at=command.seal_until,
        )
    return Decision(ClaimGranted(started, after), (started,), after, seal=kept)


def refuse_start(*, token_presented: bool, session_id_presented: bool) -> Refusal | None:
    """A client never chooses either identifier (PROTOCOL section 1)."""
    if token_presented:
        return refusals.UNEXPECTED_TOKEN
    if session_id_presented:
        return refusals.UNEXPECTED_SESSION_ID
    return None


def claim_turn(
    command: ClaimTurn, state: SessionState | None, seal: Seal | None
) -> Decision[ClaimGranted | Replay | Refusal]:
    """Validate a continue and claim the session, in the order of PROTOCOL section 3.

    A session held by a turn whose lease has lapsed is taken over: the old claim expires
    and the presented (still current) token claims as usual. A retry of a turn that
    committed, with its Idempotency-Key, gets that turn's reply (PROTOCOL section 6.4).
    """
    state = visible_to(state, command.principal)
    checked = authorise(state, command, command.presented)
    if checked is refusals.STALE_TOKEN and command.idempotency is not None:
        replay = replay_or_refuse(command.idempotency, seal, state, command.at)
        if isinstance(replay, Replay):
            replayed = recovered(replay.seal, RecoveredVia.REPLAY, command.at, command.principal)
            return Decision(replay, side_event=replayed)
        checked = replay
    if isinstance(checked, Refusal):
        return refused(checked, state, command.session_id, command.at, command.principal)
    current, expired = checked
    claimed = TurnClaimed(
        session_id=command.session_id,
        seq=current.version + (2 if expired else 1),
        turn=current.turn + 1,
        input=command.input,
        lease=command.lease,
        at=command.at,
        principal=command.principal,
    )
    events: tuple[SessionEvent, ...] = (expired, claimed) if expired else (claimed,)
    after = fold(events, current)
    # The last turn's seal recovers a token that this claim is about to spend.
    granted = ClaimGranted(claimed, after, took_over=expired is not None)
    return Decision(granted, events, after, forget=Forget.NEXT_TOKENS)


def authorise(
    state: SessionState | None,
    command: Command[object],
    presented: TokenDigest | None,
    *,
    in_flight_refused: bool = True,
) -> tuple[SessionState, ClaimExpired | None] | Refusal:
    """The checks of PROTOCOL section 3, in order, for anything the current token may do
    (`state` as the command's principal sees it); a claim whose lease lapsed gives way (the
    expiry to record, caused by this command, comes back with the state)."""
    session_id, at = command.session_id, command.at
    if state is None:
        return refusals.unknown_session(session_id)
    if presented is None:
        return refusals.MISSING_TOKEN
    if presented != state.token_digest:
        return refusals.STALE_TOKEN
    expired = None
    if state.status is SessionStatus.IN_FLIGHT and in_flight_refused:
        if state.claim is None or state.lease is None or not state.lease.lapsed(at):
            return refusals.IN_FLIGHT
        expired = ClaimExpired(
            session_id=session_id,
            seq=state.version + 1,
            turn=state.claim.turn,
            owner=state.lease.owner,
            at=at,
            principal=command.principal,
        )
    if state.status is SessionStatus.CLOSED:
        return refusals.closed(session_id)
    return state, expired


# --------------------------------------------------------------- refusals


def refusal_for(
    session_id: SessionId, refusal: Refusal, at: datetime, principal: str | None = None
) -> RequestRefused:
    """The audit fact for a refusal of a known session decided without reading it."""
    return RequestRefused(
        session_id=session_id,
        turn=None,
        reason=refusal.reason,
        presented_id=None,
        at=at,
        principal=principal,
    )


def record_refusal(
    refusal: Refusal,
    *,
    state: SessionState | None,
    presented_id: str | None,
    at: datetime,
    principal: str | None = None,
) -> RequestRefused:
    """The audit fact for a refusal. It takes no seq, so the session's version stays put.
    A session its principal may not see is not named: the refusal stands alone, as for an
    unknown id (with the id as presented)."""
    return RequestRefused(
        session_id=state.session_id if state else None,
        turn=None,
        reason=refusal.reason,
        presented_id=None if state else presented_id,
        at=at,
        principal=principal,
    )


def is_refusal(answer: object, reason: RefusalReason) -> bool:
    return isinstance(answer, Refusal) and answer.reason is reason
