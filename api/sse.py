"""Server-sent events framing (PROTOCOL sections 5 and 6.3): a live turn, a reply given
again to a retry, and a session's stored events followed to a running turn's end.

Every stream begins with a priming message, an `id:` to resume from and a `retry:` with no
data, so a client that drops before the first event can still resume (`Last-Event-ID`).

The frames are written here and sent through Litestar's `Stream`, less two costs the
benchmark found (SSE turns took about 30% more server CPU than buffered ones):
- Litestar's `ServerSentEvent` runs its header iterator through `sync_to_thread`, one thread
  hand-off per stream. The format is a few lines anyway: `id:`, `event:`, one `data:` line
  (compact JSON never contains a newline) and a blank line.
- `Stream` listens for the client's disconnect in an anyio TaskGroup, to cancel the stream.
  A turn's stream has nothing to cancel: the turn runs on in a task of its own, and the
  server drops what is sent to a client that has gone. So a turn's stream does not listen.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Send
from prometheus_client import Gauge

from baton.api.follow import Lapsed
from baton.api.live import LiveTurn, TurnEnd
from baton.api.turn_api import EventsView
from baton.api.wire import event_object, lapsed_object, outcome_object, stored_objects
from baton.domain.turn import TurnReply

EVENT_STREAM = "text/event-stream"
# Litestar 2 has no SSE keep-alive of its own; a comment line every so often (the setting
# sse_ping_seconds) keeps proxies and load balancers from closing a quiet stream.
PING = b": ping\r\n\r\n"
RETRY_MS = 1000  # how long a client waits before it reconnects a dropped stream
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_encode = msgspec.json.Encoder().encode


def frame(body: dict[str, object], seq: int | None) -> bytes:
    """One SSE message: `event:` is the object's type; stored events carry `id:`."""
    head = (
        f"id: {seq}\r\nevent: {body['type']}\r\n"
        if seq is not None
        else f"event: {body['type']}\r\n"
    )
    return head.encode() + b"data: " + _encode(body) + b"\r\n\r\n"


class Final(bytes):
    """A stream's last frame: sent with the end of the body, so the chunk that ends the
    HTTP response goes out in the same write instead of one of its own (one send, and one
    write to the socket, fewer for every streamed turn)."""

    __slots__ = ()


def priming(seq: int) -> bytes:
    """Where a dropped stream resumes from, before anything else is sent."""
    return f"id: {seq}\r\nretry: {RETRY_MS}\r\n\r\n".encode()


async def _turn_frames(live: LiveTurn, ping_seconds: float, streams: Gauge) -> AsyncIterator[bytes]:
    with streams.track_inprogress():
        yield priming(live.claim_seq)
        async for event in live.events_or_idle(ping_seconds):
            if event is None:
                yield PING
                continue
            body, seq = event_object(event)
            framed = frame(body, seq)
            yield Final(framed) if isinstance(event, TurnEnd) else framed


async def _replay_frames(reply: TurnReply, streams: Gauge) -> AsyncIterator[bytes]:
    """A committed turn's stored records and outcome, given again (PROTOCOL section 6.4)."""
    with streams.track_inprogress():
        first = min(reply.record_seqs, default=reply.seq or 1)
        yield priming(first - 1)
        for seq, record in zip(reply.record_seqs, reply.records, strict=True):
            yield frame({"type": "record", "record": record}, seq)
        yield Final(frame(outcome_object(reply), reply.seq))


async def _stored_frames(
    view: EventsView, after: int, ping_seconds: float, streams: Gauge
) -> AsyncIterator[bytes]:
    with streams.track_inprogress():
        yield priming(after)
        async for followed in _with_pings(view.follow(after), ping_seconds):
            if followed is None:
                yield PING
                continue
            if isinstance(followed, Lapsed):
                yield frame(lapsed_object(followed), None)
                return
            batch, recovered = followed
            for body, seq in stored_objects(batch, recovered):
                yield frame(body, seq)


async def _with_pings(events: AsyncIterator[Any], seconds: float) -> AsyncIterator[Any]:
    """`events`, with a None whenever none came for `seconds`."""
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=seconds)
            if not done:
                yield None
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield event
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


class _UnlistenedStreamingResponse(ASGIStreamingResponse):
    """Litestar's streaming response, without the disconnect listener (see above), and
    with a Final frame ending the body in the same send."""

    __slots__ = ()

    async def send_body(self, send: Send, receive: Receive) -> None:
        ended = False
        async for chunk in self.iterator:
            body = chunk if isinstance(chunk, bytes) else chunk.encode(self.encoding)
            ended = isinstance(chunk, Final)
            await send({"type": "http.response.body", "body": body, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class TurnStream(Stream):
    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(*args, **kwargs)
        # Same slots, so the built response can take the subclass without being rebuilt.
        response.__class__ = _UnlistenedStreamingResponse
        return response


def stream_turn(live: LiveTurn, ping_seconds: float, location: str, streams: Gauge) -> Stream:
    """The turn as an SSE stream: records and deltas, then one outcome or error event, with
    a `: ping` comment after every `ping_seconds` of silence. `Content-Location` names the
    session's events, where a dropped stream resumes. `streams` counts the streams open."""
    headers = {**HEADERS, "Content-Location": location}
    frames = _turn_frames(live, ping_seconds, streams)
    return TurnStream(frames, media_type=EVENT_STREAM, headers=headers)


def stream_replay(reply: TurnReply, headers: dict[str, str], streams: Gauge) -> Stream:
    return TurnStream(
        _replay_frames(reply, streams), media_type=EVENT_STREAM, headers={**HEADERS, **headers}
    )


async def stream_events(
    view: EventsView, after: int, ping_seconds: float, streams: Gauge
) -> Stream:
    """The session's stored events after `after`, then a running turn's as they come. This
    stream listens for the client's disconnect: following holds nothing that must finish.

    With nothing in flight the stored events are the whole stream: they are read before
    the stream starts (a database that fails then is a 503, not a stream cut short) and
    sent as a turn's stream is, with nothing to wait for, so nothing to ping or listen."""
    if view.settled:
        stored = stored_objects(await view.replay(after), view.recovered)
        return TurnStream(
            _settled_frames(stored, after, streams), media_type=EVENT_STREAM, headers=HEADERS
        )
    return Stream(
        _stored_frames(view, after, ping_seconds, streams), media_type=EVENT_STREAM, headers=HEADERS
    )


async def _settled_frames(
    stored: list[tuple[dict[str, Any], int]], after: int, streams: Gauge
) -> AsyncIterator[bytes]:
    with streams.track_inprogress():
        framed = [priming(after), *(frame(body, seq) for body, seq in stored)]
        for chunk in framed[:-1]:
            yield chunk
        yield Final(framed[-1])
