"""The decisions: given a session's state and a request, which fact, or which refusal.

Each is a plain function so every rule can be tested in microseconds; the store calls them
inside the transaction that holds the session's row, which makes "validate and claim" one
atomic step across processes.
"""

from dataclasses import dataclass
from datetime import datetime

from domain import refusals
from domain.events import (
    ClaimExpired,
    ClaimRenewed,
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionClosed,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    TurnReleased,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import Contended, HandlerOutcome
from domain.refusals import Refusal
from domain.state import Claim, SessionState, SessionStatus

FIRST_TURN = 1


@dataclass(frozen=True, slots=True)
class ClaimDecision:
    """A claim that may land: the claimed event, after the expiry of a lapsed claim if the
    session was held by a turn whose lease ran out."""

    claimed: TurnClaimed
    expired: ClaimExpired | None = None

    @property
    def events(self) -> list[SessionEvent]:
        return [self.claimed] if self.expired is None else [self.expired, self.claimed]


def start_session(
    session_id: SessionId, input: JsonObject, at: datetime, lease: Lease
) -> SessionStarted:
    """A new session; the start event is also the claim of turn 1."""
    return SessionStarted(
        session_id=session_id, seq=1, turn=FIRST_TURN, input=input, lease=lease, at=at
    )


def refuse_start(*, token_presented: bool, session_id_presented: bool) -> Refusal | None:
    """A client never chooses either identifier (PROTOCOL section 1)."""
    if token_presented:
        return refusals.UNEXPECTED_TOKEN
    if session_id_presented:
        return refusals.UNEXPECTED_SESSION_ID
    return None


def claim_turn(
    state: SessionState | None,
    *,
    session_id: SessionId,
    presented: TokenDigest | None,
    input: JsonObject,
    lease: Lease,
    at: datetime,
) -> ClaimDecision | Refusal:
    """Validate a continue and claim the session, in the order of PROTOCOL section 3.

    A session held by a turn whose lease has lapsed is taken over: the old claim expires
    and the presented (still current) token claims as usual.
    """
    checked = _authorise(state, session_id=session_id, presented=presented, at=at)
    if isinstance(checked, Refusal):
        return checked
    state, expired = checked
    claimed = TurnClaimed(
        session_id=session_id,
        seq=state.version + (2 if expired else 1),
        turn=state.turn + 1,
        input=input,
        lease=lease,
        at=at,
    )
    return ClaimDecision(claimed, expired)


def _authorise(
    state: SessionState | None,
    *,
    session_id: SessionId,
    presented: TokenDigest | None,
    at: datetime,
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


def close_by_client(
    state: SessionState | None,
    *,
    session_id: SessionId,
    presented: TokenDigest | None,
    at: datetime,
) -> list[SessionEvent] | Refusal:
    """Close a session for the holder of its current token: after that every continue is
    refused `closed` (to that holder) or `stale-token` (to anyone else)."""
    checked = _authorise(state, session_id=session_id, presented=presented, at=at)
    if isinstance(checked, Refusal):
        return checked
    state, expired = checked
    events: list[SessionEvent] = [expired] if expired else []
    seq = state.version + len(events) + 1
    events.append(
        SessionClosed(
            session_id=session_id, seq=seq, turn=state.turn, cause=CloseCause.CLIENT, at=at
        )
    )
    return events


def renew_claim(
    state: SessionState | None, claim: Claim, lease: Lease, at: datetime
) -> ClaimRenewed | Contended:
    """Extend a running turn's lease, if the session is still its own."""
    if state is None or not holds_claim(state, claim):
        return _contended(state)
    return ClaimRenewed(
        session_id=state.session_id, seq=state.version + 1, turn=claim.turn, lease=lease, at=at
    )


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


def holds_claim(state: SessionState | None, claim: Claim) -> bool:
    """Whether `claim` is still the session's claim: nobody took the session over since."""
    return state is not None and state.claim == claim


def _contended(state: SessionState | None) -> Contended:
    return Contended(current=state.version if state else 0)


def append_record(
    state: SessionState | None, claim: Claim, record: JsonValue, at: datetime
) -> RecordAppended | Contended:
    if state is None or not holds_claim(state, claim):
        return _contended(state)
    return RecordAppended(
        session_id=state.session_id, seq=state.version + 1, turn=claim.turn, record=record, at=at
    )


def commit_turn(
    state: SessionState | None,
    claim: Claim,
    outcome: HandlerOutcome,
    issued: TokenDigest,
    at: datetime,
    *,
    sealed: str | None = None,
) -> TurnCommitted | Contended:
    """Consume the current token and issue the next, or report that the session moved on."""
    if state is None or not holds_claim(state, claim):
        return _contended(state)
    return TurnCommitted(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=claim.turn,
        consumed=state.token_digest,
        issued=issued,
        outcome=outcome,
        at=at,
        sealed=sealed,
    )


def release_turn(
    state: SessionState | None, claim: Claim, cause: ReleaseCause, error: str | None, at: datetime
) -> TurnReleased | None:
    """End a turn without committing; None when the claim is no longer ours to release."""
    if state is None or not holds_claim(state, claim):
        return None
    return TurnReleased(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=claim.turn,
        cause=cause,
        error=error,
        at=at,
    )


def close_session(
    state: SessionState, cause: CloseCause, at: datetime, *, turn: int | None = None
) -> SessionClosed:
    """Close the session; `turn` names the turn that closed it (default: the last committed)."""
    return SessionClosed(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=state.turn if turn is None else turn,
        cause=cause,
        at=at,
    )
