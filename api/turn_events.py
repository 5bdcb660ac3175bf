"""The turn event objects of PROTOCOL section 5, shared by SSE and WebSocket framing."""

from typing import Any

import msgspec

from api.live import DeltaEvent, LiveEvent, RecordEvent, TurnCrashed
from api.reasons import TURN_FAILED
from api.schemas import turn_reply_body
from domain.driver import TurnFailed, TurnReply


def error_object(reason: str, message: str) -> dict[str, Any]:
    return {"type": "error", "message": message, "reason": reason}


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
    if isinstance(event, TurnFailed):
        return error_object(TURN_FAILED, f"turn failed: {event.message}"), None
    if isinstance(event, TurnCrashed):
        return error_object(event.reason, event.message), None
    raise TypeError(f"not a turn event: {event!r}")  # pragma: no cover
