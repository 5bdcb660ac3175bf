"""How a turn looks on the wire (PROTOCOL section 5), in one place for every transport: the
buffered reply, the event objects SSE and WebSocket frame, and what a failed end says."""

from typing import Any

import msgspec

from api.live import DeltaEvent, LiveEvent, RecordEvent, TurnCrashed
from api.reasons import TURN_FAILED
from api.schemas import TurnReplyBody
from domain.outcomes import Contended, Finished, Parked
from domain.refusals import Refusal
from domain.turn import TurnFailed, TurnReply


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


def failure_of(end: TurnFailed | TurnCrashed) -> tuple[str, str]:
    """(reason, message) of a turn that ended without an outcome."""
    if isinstance(end, TurnFailed):
        return TURN_FAILED, f"turn failed: {end.message}"
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
