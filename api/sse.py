"""Server-sent events framing of a live turn (PROTOCOL section 5)."""

import json
from collections.abc import AsyncIterator

from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.live import LiveTurn
from api.turn_events import event_object

EVENT_STREAM = "text/event-stream"
# Litestar 2 has no SSE keep-alive of its own; a comment line every so often keeps proxies
# and load balancers from closing a stream whose turn is thinking quietly.
PING_SECONDS = 15.0


async def _messages(live: LiveTurn) -> AsyncIterator[ServerSentEventMessage]:
    async for event in live.events_or_idle(PING_SECONDS):
        if event is None:
            yield ServerSentEventMessage(data=None, comment="ping")
            continue
        body, seq = event_object(event)
        yield ServerSentEventMessage(
            data=json.dumps(body, separators=(",", ":")), event=body["type"], id=seq
        )


def stream_turn(live: LiveTurn) -> ServerSentEvent:
    """The turn as an SSE stream: records and deltas, then one outcome or error event."""
    return ServerSentEvent(_messages(live), headers={"X-Accel-Buffering": "no"})
