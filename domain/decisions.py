"""The decisions: given a session's state and a command, which facts, or which refusal.

Each is a plain function so every rule can be tested in microseconds. A store calls them
(through `Command.decide`) inside the transaction that holds the session's row, which makes
"validate and claim" one atomic step across processes, and writes what they return: the
events, the state they fold into, or the refusal to record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from domain import refusals
from domain.events import (
    ClaimExpired,
    ClaimRenewed,
    CloseCause,
    RecordAppended,
    RequestRefused,
    SessionClosed,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    TurnReleased,
)
from domain.identifiers import SessionId, TokenDigest
from domain.outcomes import Contended
from domain.refusals import Refusal
from domain.state import Claim, SessionState, SessionStatus, fold

if TYPE_CHECKING:  # the commands call these functions; the import runs the other way
    from domain.commands import (
        AppendRecord,
        ClaimTurn,
        CloseSession,
        CommitTurn,
        ReleaseTurn,
        RenewClaim,
        StartSession,
    )

FIRST_TURN = 1
A = TypeVar("A", covariant=True)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Decision(Generic[A]):
    """What a command does to a session: the events to append and the state they fold into,
    or a refusal to record (which changes no state), and what the caller is answered."""

    answer: A
    events: tuple[SessionEvent, ...] = ()
    after: SessionState | None = None  # fold(events, state); None when nothing changes
    refused: RequestRefused | None = None


@dataclass(frozen=True, slots=True)
class ClaimGranted:
    """A claim that landed, with the session's state right after it."""

    event: SessionStarted | TurnClaimed
    state: SessionState

    @property
    def claim(self) -> Claim:
        return Claim(turn=self.event.turn, seq=self.event.seq)


def _changed(answer: T, events: tuple[SessionEvent, ...], after: SessionState) -> Decision[T]:
    return Decision(answer, events, after)


def _refused(
    refusal: Refusal, state: SessionState | None, session_id: str, at: datetime
) -> Decision[Refusal]:
    recorded = record_refusal(refusal, state=state, presented_id=session_id, at=at)
    return Decision(refusal, refused=recorded)


# --------------------------------------------------------------- starting and claiming


def start_session(command: StartSession, state: SessionState | None) -> Decision[ClaimGranted]:
    """A new session; the start event is also the claim of turn 1."""
    if state is not None:
        raise ValueError(f"session {command.session_id} already exists")
    started = SessionStarted(
        session_id=command.session_id,
        seq=1,
        turn=FIRST_TURN,
        input=command.input,
        lease=command.lease,
        at=command.at,
    )
    after = fold([started])
    return _changed(ClaimGranted(started, after), (started,), after)


def refuse_start(*, token_presented: bool, session_id_presented: bool) -> Refusal | None:
    """A client never chooses either identifier (PROTOCOL section 1)."""
    if token_presented:
        return refusals.UNEXPECTED_TOKEN
    if session_id_presented:
        return refusals.UNEXPECTED_SESSION_ID
    return None


def claim_turn(command: ClaimTurn, state: SessionState | None) -> Decision[ClaimGranted | Refusal]:
    """Validate a continue and claim the session, in the order of PROTOCOL section 3.

    A session held by a turn whose lease has lapsed is taken over: the old claim expires
    and the presented (still current) token claims as usual.
    """
    checked = _authorise(state, command.session_id, command.presented, command.at)
    if isinstance(checked, Refusal):
        return _refused(checked, state, command.session_id, command.at)
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
    return _changed(ClaimGranted(claimed, after), events, after)


def _authorise(
    state: SessionState | None, session_id: SessionId, presented: TokenDigest | None, at: datetime
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
    if state.status is SessionStatus.IN_FLIGHT:
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


def close_session(
    command: CloseSession, state: SessionState | None
) -> Decision[SessionState | Refusal]:
    """Close a session for the holder of its current token: after that every continue is
    refused `closed` (to that holder) or `stale-token` (to anyone else)."""
    checked = _authorise(state, command.session_id, command.presented, command.at)
    if isinstance(checked, Refusal):
        return _refused(checked, state, command.session_id, command.at)
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
    return _changed(after, events, after)


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


# --------------------------------------------------------------- a running turn


def holds_claim(state: SessionState | None, claim: Claim) -> bool:
    """Whether `claim` is still the session's claim: nobody took the session over since."""
    return state is not None and state.claim == claim


def _contended(state: SessionState | None) -> Decision[Contended]:
    return Decision(Contended(current=state.version if state else 0))


def renew_claim(
    command: RenewClaim, state: SessionState | None
) -> Decision[ClaimRenewed | Contended]:
    """Extend a running turn's lease, if the session is still its own."""
    if state is None or not holds_claim(state, command.claim):
        return _contended(state)
    renewed = ClaimRenewed(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=command.claim.turn,
        lease=command.lease,
        at=command.at,
    )
    return _changed(renewed, (renewed,), fold([renewed], state))


def append_record(
    command: AppendRecord, state: SessionState | None
) -> Decision[RecordAppended | Contended]:
    if state is None or not holds_claim(state, command.claim):
        return _contended(state)
    appended = RecordAppended(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=command.claim.turn,
        record=command.record,
        at=command.at,
    )
    return _changed(appended, (appended,), fold([appended], state))


def commit_turn(
    command: CommitTurn, state: SessionState | None
) -> Decision[TurnCommitted | Contended]:
    """Consume the token the claim was made with and issue the next, while the claim holds.

    A claim that no longer holds, or a session whose current token is not the one this
    commit would consume, means the session moved on: the turn ends contended."""
    if state is None or not holds_claim(state, command.claim):
        return _contended(state)
    if state.token_digest != command.consumed:
        return _contended(state)
    committed = TurnCommitted(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=command.claim.turn,
        consumed=command.consumed,
        issued=command.issued,
        outcome=command.outcome,
        at=command.at,
        sealed=command.sealed,
    )
    return _changed(committed, (committed,), fold([committed], state))


def release_turn(command: ReleaseTurn, state: SessionState | None) -> Decision[TurnReleased | None]:
    """End a turn without committing (closing the session too if asked); nothing when the
    claim is no longer ours to release."""
    if state is None or not holds_claim(state, command.claim):
        return Decision(None)
    released = TurnReleased(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=command.claim.turn,
        cause=command.cause,
        error=command.error,
        at=command.at,
    )
    events: tuple[SessionEvent, ...] = (released,)
    if command.close is not None:
        closing = SessionClosed(
            session_id=state.session_id,
            seq=released.seq + 1,
            turn=command.claim.turn,
            cause=command.close,
            at=command.at,
        )
        events = (released, closing)
    return _changed(released, events, fold(events, state))
