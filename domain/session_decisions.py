"""The decisions about a session as a whole, for the holder of its token: close it, ask
its running turn to stop, read it (PROTOCOL sections 3, 6.1-6.3 and 6.5). Starting and
claiming are domain/decisions.py, whose checks these share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from baton.domain.decisions import CancelAnswer, Decision, authorise, refused
from baton.domain.events import CancelRequested, CloseCause, SessionClosed, SessionEvent
from baton.domain.principals import visible_to
from baton.domain.recovery import ReadAccess, Seal, authorise_read, recovered
from baton.domain.refusals import Refusal
from baton.domain.state import SessionState, fold

if TYPE_CHECKING:  # the commands call these functions; the import runs the other way
    from baton.domain.commands import CloseSession, ReadSession, RequestCancel


def close_session(
    command: CloseSession, state: SessionState | None, seal: Seal | None = None
) -> Decision[SessionState | Refusal]:
    """Close a session for the holder of its current token: after that every continue is
    refused `closed` (to that holder) or `stale-token` (to anyone else)."""
    state = visible_to(state, command.principal)
    checked = authorise(state, command, command.presented)
    if isinstance(checked, Refusal):
        return refused(checked, state, command.session_id, command.at, command.principal)
    current, expired = checked
    closing = SessionClosed(
        session_id=command.session_id,
        seq=current.version + (2 if expired else 1),
        turn=current.turn,
        cause=CloseCause.CLIENT,
        at=command.at,
        principal=command.principal,
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
    state = visible_to(state, command.principal)
    checked = authorise(state, command, command.presented, in_flight_refused=False)
    if isinstance(checked, Refusal):
        return refused(checked, state, command.session_id, command.at, command.principal)
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
        principal=command.principal,
    )
    after = fold([asked], current)
    return Decision(CancelAnswer(after, pending=True), (asked,), after)


def read_session(
    command: ReadSession, state: SessionState | None, seal: Seal | None
) -> Decision[ReadAccess | Refusal]:
    """A read (PROTOCOL sections 6.1-6.3); a recovery with the consumed token is a fact."""
    state = visible_to(state, command.principal)
    access = authorise_read(state, command.session_id, command.presented, seal, command.at)
    if isinstance(access, Refusal):
        return refused(access, state, command.session_id, command.at, command.principal)
    if access.recovered is None:
        return Decision(access)
    via, at, principal = command.via, command.at, command.principal
    return Decision(access, side_event=recovered(access.recovered, via, at, principal))
