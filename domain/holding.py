"""The decisions of a running turn's claim holder: renew, record, commit, release.

Each holds only while the claim is still the session's (nobody took the session over); a
holder that lost it is answered Contended with the version the session moved on to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baton.domain.decisions import Decision, changed
from baton.domain.events import (
    ClaimRenewed,
    RecordAppended,
    SessionClosed,
    SessionEvent,
    TurnCommitted,
    TurnReleased,
)
from baton.domain.outcomes import Contended
from baton.domain.recovery import Forget, Seal
from baton.domain.state import Claim, SessionState, fold

if TYPE_CHECKING:  # the commands call these functions; the import runs the other way
    from baton.domain.commands import AppendRecord, CommitTurn, ReleaseTurn, RenewClaim


def holds_claim(state: SessionState | None, claim: Claim) -> bool:
    """Whether `claim` is still the session's claim: nobody took the session over since."""
    return state is not None and state.claim == claim


def _contended(state: SessionState | None) -> Decision[Contended]:
    return Decision(Contended(current=state.version if state else 0))


def renew_claim(
    command: RenewClaim, state: SessionState | None, seal: Seal | None = None
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
        principal=command.principal,
    )
    return changed(renewed, (renewed,), state)


def append_record(
    command: AppendRecord, state: SessionState | None, seal: Seal | None = None
) -> Decision[RecordAppended | Contended]:
    if state is None or not holds_claim(state, command.claim):
        return _contended(state)
    appended = RecordAppended(
        session_id=state.session_id,
        seq=state.version + 1,
        turn=command.claim.turn,
        record=command.record,
        at=command.at,
        principal=command.principal,
    )
    return changed(appended, (appended,), state)


def commit_turn(
    command: CommitTurn, state: SessionState | None, seal: Seal | None = None
) -> Decision[TurnCommitted | Contended]:
    """Consume the token the claim was made with and issue the next, while the claim holds;
    keep the issued token sealed for recovery (PROTOCOL section 6.2).

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
        principal=command.principal,
    )
    return Decision(committed, (committed,), fold([committed], state), seal=command.seal)


def release_turn(
    command: ReleaseTurn, state: SessionState | None, seal: Seal | None = None
) -> Decision[TurnReleased | None]:
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
        principal=command.principal,
    )
    if command.close is None:
        return changed(released, (released,), state)
    closing = SessionClosed(
        session_id=state.session_id,
        seq=released.seq + 1,
        turn=command.claim.turn,
        cause=command.close,
        at=command.at,
        principal=command.principal,
    )
    events: tuple[SessionEvent, ...] = (released, closing)
    # A failed start made no session worth a key: a retry with it starts afresh.
    return Decision(released, events, fold(events, state), forget=Forget.ALL)
