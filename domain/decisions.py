"""The decisions: given a session's state and a command, which facts, or which refusal.

Each is a plain function so every rule can be tested in microseconds. A store calls them
(through `Command.decide`) inside the transaction that holds the session's row, which makes
"validate and claim" one atomic step across processes, and writes what they return: the
events and the state they fold into, a fact without a seq (a refusal, a recovery), and the
seals recovery keeps (domain/recovery.py). The decisions of a running turn's claim holder
are in domain/holding.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from domain import refusals
from domain.events import (
    CancelRequested,
    ClaimExpired,
    CloseCause,
    RecoveredVia,
    RequestRefused,
    SessionClosed,
    SessionEvent,
    SessionStarted,
    SideEvent,
    TurnClaimed,
)
from domain.identifiers import SessionId, TokenDigest
from domain.recovery import (
    Forget,
    ReadAccess,
    Replay,
    Seal,
    authorise_read,
    recovered,
    replay_or_refuse,
    replay_start,
)
from domain.refusals import Refusal, RefusalReason
from domain.state import Claim, SessionState, SessionStatus, fold

if TYPE_CHECKING:  # the commands call these functions; the import runs the other way
    from domain.commands import ClaimTurn, CloseSession, ReadSession, RequestCancel, StartSession

FIRST_TURN = 1
A = TypeVar("A", covariant=True)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class ClaimGranted:
    """A claim that landed, with the session's state right after it."""

    event: SessionStarted | TurnClaimed
    state: SessionState

    @property
    def claim(self) -> Claim:
        return Claim(turn=self.event.turn, seq=self.event.seq)


@dataclass(frozen=True, slots=True)
class CancelAnswer:
    """The session after a cancel request; `pending` while its turn has yet to stop."""

    state: SessionState
    pending: bool


def changed(answer: T, events: tuple[SessionEvent, ...], state: SessionState | None) -> Decision[T]:
    return Decision(answer, events, fold(events, state))


def refused(
    refusal: Refusal, state: SessionState | None, session_id: str, at: datetime
) -> Decision[Refusal]:
    recorded = record_refusal(refusal, state=state, presented_id=session_id, at=at)
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
            return refused(answer, state, seal.session_id, command.at)
        return Decision(answer, side_event=recovered(seal, RecoveredVia.REPLAY, command.at))
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
    checked = _authorise(state, command.session_id, command.presented, command.at)
    if checked is refusals.STALE_TOKEN and command.idempotency is not None:
        replay = replay_or_refuse(command.idempotency, seal, state, command.at)
        if isinstance(replay, Replay):
            return Decision(
                replay, side_event=recovered(replay.seal, RecoveredVia.REPLAY, command.at)
            )
        checked = replay
    if isinstance(checked, Refusal):
        return refused(checked, state, command.session_id, command.at)
    current, expired = checked
    claimed = TurnClaimed(
        session_id=command.session_id,
        seq=current.version + (2 if expired else 1),
        turn=current.turn + 1,
        input=command.input,
        lease=command.lease,
        at=command.at,
    )
    events: tuple[SessionEvent, ...] = (expired, claimed) if expired else (claimed,)
    after = fold(events, current)
    # The last turn's seal recovers a token that this claim is about to spend.
    return Decision(ClaimGranted(claimed, after), events, after, forget=Forget.NEXT_TOKENS)


def _authorise(
    state: SessionState | None,
    session_id: SessionId,
    presented: TokenDigest | None,
    at: datetime,
    *,
    in_flight_refused: bool = True,
) -> tuple[SessionState, ClaimExpired | None] | Refusal:
    """The checks of PROTOCOL section 3, in order, for anything the current token may do;
    a claim whose lease lapsed gives way (the expiry to record comes back with the state)."""
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
        )
    if state.status is SessionStatus.CLOSED:
        return refusals.closed(session_id)
    return state, expired


# --------------------------------------------------------------- closing, cancelling, reading


def close_session(
    command: CloseSession, state: SessionState | None, seal: Seal | None = None
) -> Decision[SessionState | Refusal]:
    """Close a session for the holder of its current token: after that every continue is
    refused `closed` (to that holder) or `stale-token` (to anyone else)."""
    checked = _authorise(state, command.session_id, command.presented, command.at)
    if isinstance(checked, Refusal):
        return refused(checked, state, command.session_id, command.at)
    current, expired = checked
    closing = SessionClosed(
        session_id=command.session_id,
        seq=current.version + (2 if expired else 1),
        turn=current.turn,
        cause=CloseCause.CLIENT,
        at=command.at,
    )
    events: tuple[SessionEvent, ...] = (expired, closing) if expired else (closing,)
    after = fold(events, current)
    return Decision(after, events, after)


def request_cancel(
    command: RequestCancel, state: SessionState | None, seal: Seal | None = None
) -> Decision[CancelAnswer | Refusal]:
    """Ask the running turn to stop (PROTOCOL section 6.5): the current token may, though
    a turn holds the claim; an idle session has nothing to stop; asking twice is asking
    once."""
    checked = _authorise(
        state, command.session_id, command.presented, command.at, in_flight_refused=False
    )
    if isinstance(checked, Refusal):
        return refused(checked, state, command.session_id, command.at)
    current, _ = checked
    if current.claim is None:
        return Decision(CancelAnswer(current, pending=False))
    if current.cancel_requested:
        return Decision(CancelAnswer(current, pending=True))
    asked = CancelRequested(
        session_id=current.session_id,
        seq=current.version + 1,
        turn=current.claim.turn,
        at=command.at,
    )
    after = fold([asked], current)
    return Decision(CancelAnswer(after, pending=True), (asked,), after)


def read_session(
    command: ReadSession, state: SessionState | None, seal: Seal | None
) -> Decision[ReadAccess | Refusal]:
    """A read (PROTOCOL sections 6.1-6.3); a recovery with the consumed token is a fact."""
    access = authorise_read(state, command.session_id, command.presented, seal, command.at)
    if isinstance(access, Refusal):
        return refused(access, state, command.session_id, command.at)
    if access.recovered is None:
        return Decision(access)
    return Decision(access, side_event=recovered(access.recovered, command.via, command.at))


# --------------------------------------------------------------- refusals


def refusal_for(session_id: SessionId, refusal: Refusal, at: datetime) -> RequestRefused:
    """The audit fact for a refusal of a known session decided without reading it."""
    return RequestRefused(
        session_id=session_id, turn=None, reason=refusal.reason, presented_id=None, at=at
    )


def record_refusal(
    refusal: Refusal, *, state: SessionState | None, presented_id: str | None, at: datetime
) -> RequestRefused:
    """The audit fact for a refusal. It takes no seq, so the session's version stays put."""
    return RequestRefused(
        session_id=state.session_id if state else None,
        turn=None,
        reason=refusal.reason,
        presented_id=None if state else presented_id,
        at=at,
    )


def is_refusal(answer: object, reason: RefusalReason) -> bool:
    return isinstance(answer, Refusal) and answer.reason is reason
