"""The WebSocket transport at /v1/ws (PROTOCOL section 5): JSON text frames in, one event
object per text frame out, the same protocol rules as REST.

A connection starts unbound. A frame without a token starts a session and binds it; a frame
with `sessionId` and `continuationToken` attaches to that session after the same validation
as a REST continue. On a bound connection the connection itself authorises the next turn
with the token it was last issued, validated fresh by the store like any presented token.

Besides turns (PROTOCOL section 6): a frame with `after` resumes instead (the stored events
after that seq, then a running turn's as they come, then the connection is bound); a frame
`{"cancel": true}` on a bound connection stops its running turn; `idempotencyKey` is the
frame's Idempotency-Key.
"""

import asyncio
import contextlib
import json
from typing import Any

from litestar import WebSocket, get, websocket
from litestar.di import NamedDependency

from baton.api.auth import principal_of
from baton.api.errors import (
    BAD_REQUEST,
    UNAVAILABLE,
    UNAVAILABLE_MESSAGE,
    WEBSOCKETS_DISABLED,
    ApiError,
)
from baton.api.follow import Lapsed
from baton.api.idempotency import KEY_FIELD, checked_key
from baton.api.live import LiveTurn, TurnEnd
from baton.api.metrics import WEBSOCKET
from baton.api.sessions import MAX_SEQ
from baton.api.turn_api import EventsView, Opened, TurnApi
from baton.api.turn_input import (
    FRAME,
    SESSION_FIELD,
    TOKEN_FIELD,
    decode_object,
    split_turn_input,
    take_text,
)
from baton.api.wire import (
    error_object,
    event_object,
    lapsed_object,
    outcome_object,
    refusal_object,
    stored_objects,
)
from baton.domain.identifiers import SessionId, parse_session_id
from baton.domain.ports import StoreUnavailable
from baton.domain.refusals import Refusal
from baton.domain.requests import CancelRequest, ContinueRequest, ReadRequest, StartRequest
from baton.domain.turn import TurnCancelled, TurnFailed, TurnReply

WS_PATH = "/ws"
POLICY_VIOLATION = 1008  # RFC 6455 close code
AFTER_FIELD, CANCEL_FIELD = "after", "cancel"


class Connection:
    def __init__(self, socket: WebSocket[Any, Any, Any], turns: TurnApi):
        self._socket = socket
        self._turns = turns
        self._session_id: SessionId | None = None
        self._token: str | None = None  # the token this connection was last issued
        self._forwarding: asyncio.Task[None] | None = None
        self._starting = False
        self._send_lock = asyncio.Lock()
        self._principal = principal_of(socket)  # authenticated at the upgrade (api/auth.py)

    @property
    def _busy(self) -> bool:
        return self._forwarding is not None

    async def serve(self) -> None:
        try:
            while True:
                message = await self._socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if isinstance(text, str) and _too_big(text, self._turns.max_frame_bytes):
                    # As uvicorn does under `baton serve` (ws_max_size), whatever server
                    # runs the app (an embedding app's may take 16 MiB frames).
                    await self._socket.close(code=MESSAGE_TOO_BIG, reason="frame too large")
                    return
                await self._on_frame(text if isinstance(text, str) else None)
        finally:
            # The turn itself runs on in the TurnRunner; only its relay to this client stops.
            if self._forwarding is not None:
                self._forwarding.cancel()

    async def _on_frame(self, text: str | None) -> None:
        try:
            await self._dispatch(_parse(text))
        except ApiError as error:
            await self._send(error_object(error.reason, error.message))
        except StoreUnavailable:
            await self._send(error_object(UNAVAILABLE, UNAVAILABLE_MESSAGE))

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        if frame.get(CANCEL_FIELD) is True:
            await self._cancel()
        elif AFTER_FIELD in frame:
            await self._resume(frame)
        else:
            starting = self._session_id is None
            opened = await self._open(frame)
            if isinstance(opened, Refusal):
                await self._send(refusal_object(opened))
            elif isinstance(opened, TurnReply):
                await self._replay(opened)
            else:
                self._starting = starting
                self._session_id = opened.session_id
                self._forwarding = asyncio.create_task(self._forward(opened))

    async def _open(self, frame: dict[str, Any]) -> Opened:
        turn_input, token = split_turn_input(frame)
        named = take_text(turn_input, SESSION_FIELD)
        if self._session_id is None:
            key = checked_key(turn_input.pop(KEY_FIELD, None), starting=named is None)
            if named is None:
                start = StartRequest(turn_input, token, key=key, principal=self._principal)
                return await self._turns.start(start, WEBSOCKET)
            request = ContinueRequest(named, turn_input, token, key, self._principal)
            return await self._turns.proceed(request, WEBSOCKET)
        key = checked_key(turn_input.pop(KEY_FIELD, None), starting=False)
        self._check_bound(named)
        if self._busy and token is None:
            # Its own turn holds the claim: the single-claim rule, answered without queueing.
            return await self._turns.refuse_in_flight(self._session_id, self._principal)
        request = ContinueRequest(
            self._session_id, turn_input, token or self._token, key, self._principal
        )
        return await self._turns.proceed(request, WEBSOCKET)

    def _check_bound(self, named: str | None) -> None:
        if named is not None and parse_session_id(named) != self._session_id:
            message = f"this connection is bound to session '{self._session_id}'"
            raise ApiError(BAD_REQUEST, message)

    async def _cancel(self) -> None:
        if self._session_id is None:
            raise ApiError(BAD_REQUEST, "nothing to cancel: this connection has no session")
        asked = CancelRequest(self._session_id, self._token, self._principal)
        stopped = await self._turns.cancel(asked, 0)
        if isinstance(stopped, Refusal):
            await self._send(refusal_object(stopped))

    async def _resume(self, frame: dict[str, Any]) -> None:
        """The stored events after `after`, a running turn's as they come; then bound."""
        after = frame.pop(AFTER_FIELD)
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_SEQ:
            raise ApiError(BAD_REQUEST, f"{AFTER_FIELD} must be a seq, from 0 to {MAX_SEQ}")
        rest, token = split_turn_input(frame)
        named = take_text(rest, SESSION_FIELD)
        if rest:
            raise ApiError(BAD_REQUEST, "a frame that resumes carries no turn input")
        if self._session_id is not None:
            self._check_bound(named)
            named, token = self._session_id, token or self._token
        if named is None:
            raise ApiError(BAD_REQUEST, "a frame that resumes names its sessionId")
        view = await self._turns.events(ReadRequest(named, token, principal=self._principal))
        if isinstance(view, Refusal):
            await self._send(refusal_object(view))
            return
        self._session_id = view.session_id
        self._token = view.recovered.token if view.recovered else token
        self._forwarding = asyncio.create_task(self._follow(view, after))

    async def _follow(self, view: EventsView, after: int) -> None:
        try:
            async for followed in view.follow(after):
                if isinstance(followed, Lapsed):
                    await self._send(lapsed_object(followed))
                    return
                batch, recovered = followed
                if recovered is not None:
                    self._token = recovered.token
                for body, _ in stored_objects(batch, recovered):
                    await self._send(body)
        finally:
            self._forwarding = None

    async def _replay(self, reply: TurnReply) -> None:
        """A committed turn's stored records and outcome, given again (PROTOCOL 6.4)."""
        self._session_id, self._token = reply.session_id, reply.token
        for seq, record in zip(reply.record_seqs, reply.records, strict=True):
            await self._send({"type": "record", "record": record, "seq": seq})
        await self._send({**outcome_object(reply), "replayed": True})

    async def _forward(self, live: LiveTurn) -> None:
        async for event in live.events():
            body, _ = event_object(event)
            if isinstance(event, TurnEnd):
                self._end(event)  # before the last frame, so the client's next frame sees it
            await self._send(body)

    def _end(self, end: TurnEnd) -> None:
        self._forwarding = None
        if isinstance(end, TurnReply) and end.token is not None:
            self._token = end.token
        elif isinstance(end, TurnFailed | TurnCancelled) and self._starting:
            self._session_id = self._token = None  # a failed start closed its session
        self._starting = False

    async def _send(self, body: dict[str, Any]) -> None:
        async with self._send_lock:
            with contextlib.suppress(Exception):  # the client may be gone; the turn is not
                await self._socket.send_text(json.dumps(body, separators=(",", ":")))


MESSAGE_TOO_BIG = 1009  # RFC 6455


def _too_big(text: str, limit: int) -> bool:
    """Over `limit` bytes in UTF-8 (a character is at most 4 bytes: most frames are
    judged by their length alone)."""
    return len(text) * 4 > limit and len(text.encode()) > limit


def _parse(text: str | None) -> dict[str, Any]:
    if text is None:
        raise ApiError(BAD_REQUEST, "frames must be JSON text frames")
    return decode_object(text, FRAME)


@websocket(WS_PATH)
async def turns_socket(
    socket: WebSocket[Any, Any, Any],
    turns: NamedDependency[TurnApi],
) -> None:
    """Turns over one WebSocket connection."""
    await socket.accept()
    if "x-continuation-token" in socket.headers or TOKEN_FIELD in socket.query_params:
        message = "tokens travel in frames only, never in the upgrade request"
        await socket.send_text(json.dumps(error_object(BAD_REQUEST, message)))
        await socket.close(code=POLICY_VIOLATION, reason="token in upgrade request")
        return
    with turns.instruments.websockets.track_inprogress():
        await Connection(socket, turns).serve()


@get(WS_PATH, tags=["turns"])
async def websockets_disabled() -> None:
    """What /v1/ws answers on a server started with --no-websockets: 426, never a downgrade."""
    raise ApiError(WEBSOCKETS_DISABLED, "WebSockets are disabled on this server")
