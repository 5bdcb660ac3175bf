"""How a turn looks on the wire (PROTOCOL section 5), in one place for every transport: the
buffered reply, the event objects SSE and WebSocket frame, and what a failed end says."""

from collections.abc import Sequence
from typing import Any

import msgspec

from baton.api.follow import Lapsed
from baton.api.live import DeltaEvent, LiveEvent, RecordEvent, TurnCrashed
from baton.api.reasons import CANCELLED, TURN_FAILED, UNAVAILABLE
from baton.api.schemas import TurnReplyBody
from baton.domain.events import (
    RecordAppended,
    ReleaseCause,
    SessionEvent,
    TurnCommitted,
    TurnReleased,
    kind_of,
)
from baton.domain.history import void_records
from baton.domain.outcomes import Contended, Finished, Parked
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.turn import CANCELLED_ERROR, TurnCancelled, TurnFailed, TurnInvalid, TurnReply
from baton.domain.values import value


@value
class RecoveredTurn:
    """A turn read with the token it consumed, and the token it issued (6.2)."""

    turn: int
    token: str


def turn_reply_body(reply: TurnReply) -> TurnReplyBody:
    """The buffered reply. Exactly one of output, wait, current is set; the token is absent
    only when nothing committed."""
    body = TurnReplyBody(
        session_id=reply.session_id,
        status=reply.outcome.status,
        turn=reply.turn,
        records=reply.records,
    )
    if reply.token is not None:
        body.continuation_token = reply.token
    outcome = reply.outcome
    if isinstance(outcome, Finished):
        body.output = outcome.output
    elif isinstance(outcome, Parked):
        body.wait = outcome.wait
    elif isinstance(outcome, Contended):
        body.current = outcome.current
    return body


def failure_of(end: TurnFailed | TurnCancelled | TurnInvalid | TurnCrashed) -> tuple[str, str]:
    """(reason, message) of a turn that ended without an outcome."""
    if isinstance(end, TurnFailed):
        return TURN_FAILED, f"turn failed: {end.message}"
    if isinstance(end, TurnCancelled):
        return CANCELLED, CANCELLED_ERROR
    if isinstance(end, TurnInvalid):
        return RefusalReason.INVALID_INPUT.value, end.message
    return end.reason, end.message


def error_object(reason: str, message: str) -> dict[str, Any]:
    """An in-band error event (a refusal or failure inside a stream or a socket)."""
    return {"type": "error", "message": message, "reason": reason}


def refusal_object(refusal: Refusal) -> dict[str, Any]:
    return error_object(refusal.reason.value, refusal.message)


def outcome_object(reply: TurnReply) -> dict[str, Any]:
    """The buffered reply's fields, less the records a stream already carried."""
    body = msgspec.to_builtins(turn_reply_body(reply))
    del body["records"]
    return {"type": "outcome", **body}


def event_object(event: LiveEvent) -> tuple[dict[str, Any], int | None]:
    """The wire object for one event, and its stored seq (None if it is not stored)."""
    if isinstance(event, RecordEvent):
        return {"type": "record", "record": event.record}, event.seq
    if isinstance(event, DeltaEvent):
        return {"type": "delta", "text": event.text}, None
    if isinstance(event, TurnReply):
        return outcome_object(event), event.seq  # seq is None for a contended outcome
    return error_object(*failure_of(event)), None


# --------------------------------------------------------------- stored events (6.3)

_RELEASED_AS = {
    ReleaseCause.FAILED: TURN_FAILED,
    ReleaseCause.TIMED_OUT: TURN_FAILED,
    ReleaseCause.CANCELLED: CANCELLED,
    ReleaseCause.SHUT_DOWN: UNAVAILABLE,
    ReleaseCause.UNAVAILABLE: UNAVAILABLE,
    ReleaseCause.INVALID_INPUT: RefusalReason.INVALID_INPUT.value,
}


def lapsed_object(lapsed: Lapsed) -> dict[str, Any]:
    """How a followed turn whose lease lapsed ends a stream: not stored (no seq), and the
    same reason a replica that stopped gives its own turn's stream."""
    message = (
        f"turn {lapsed.turn} stopped: its replica's lease lapsed; the continuationToken "
        "is still current, so send the turn again"
    )
    return {**error_object(UNAVAILABLE, message), "turn": lapsed.turn}


def stored_objects(
    events: Sequence[SessionEvent], recovered: RecoveredTurn | None = None
) -> list[tuple[dict[str, Any], int]]:
    """A session's stored events as the event objects of PROTOCOL section 5, each with its
    seq: records (marked void when their attempt did not commit), outcomes, errors. The
    outcome of a turn recovered with the token it consumed carries the token it issued."""
    void = {event.seq for event in void_records(events, kind_of)}
    wire: list[tuple[dict[str, Any], int]] = []
    for event in events:
        body = _stored_object(event, recovered)
        if body is None:
            continue  # claims, renewals, expiries... are not turn events on the wire
        body["seq"] = event.seq
        if event.seq in void:
            body["void"] = True
        wire.append((body, event.seq))
    return wire


def _stored_object(event: SessionEvent, recovered: RecoveredTurn | None) -> dict[str, Any] | None:
    if isinstance(event, RecordAppended):
        return {"type": "record", "record": event.record, "turn": event.turn}
    if isinstance(event, TurnCommitted):
        reply = TurnReply(event.session_id, event.turn, event.outcome, None, event.seq, [])
        body = outcome_object(reply)
        if recovered is not None and recovered.turn == event.turn:
            body["continuationToken"] = recovered.token
            body["recovered"] = True
        return body
    if isinstance(event, TurnReleased):
        reason = _RELEASED_AS[event.cause]
        message = f"turn failed: {event.error}" if reason == TURN_FAILED else event.error or ""
        return {**error_object(reason, message), "turn": event.turn}
    return None
