"""The WebSocket transport at /v1/ws (PROTOCOL section 5): JSON text frames in, one event
object per text frame out, the same protocol rules as REST.

A connection starts unbound. A frame without a token starts a session and binds it; a frame
with `sessionId` and `continuationToken` attaches to that session after the same validation
as a REST continue. On a bound connection the connection itself authorises the next turn
with the token it was last issued, validated fresh by the store like any presented token.
"""

import asyncio
import contextlib
import json
from typing import Any

from litestar import WebSocket, get, websocket
from litestar.di import NamedDependency

from api.errors import BAD_REQUEST, UNAVAILABLE, UNAVAILABLE_MESSAGE, WEBSOCKETS_DISABLED, ApiError
from api.live import LiveTurn, TurnEnd
from api.turn_api import TurnApi
from api.turn_input import SESSION_FIELD, TOKEN_FIELD, split_turn_input, take_text
from api.wire import error_object, event_object, refusal_object
from domain.identifiers import SessionId, parse_session_id
from domain.ports import StoreUnavailable
from domain.refusals import Refusal
from domain.requests import ContinueRequest, StartRequest
from domain.turn import TurnFailed, TurnReply

WS_PATH = "/v1/ws"
POLICY_VIOLATION = 1008  # RFC 6455 close code


class Connection:
    def __init__(self, socket: WebSocket[Any, Any, Any], turns: TurnApi):
        self._socket = socket
        self._turns = turns
        self._session_id: SessionId | None = None
        self._token: str | None = None  # the token this connection was last issued
        self._forwarding: asyncio.Task[None] | None = None
        self._starting = False
        self._send_lock = asyncio.Lock()

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
                await self._on_frame(text if isinstance(text, str) else None)
        finally:
            # The turn itself runs on in the TurnRunner; only its relay to this client stops.
            if self._forwarding is not None:
                self._forwarding.cancel()

    async def _on_frame(self, text: str | None) -> None:
        try:
            opened = await self._open(_parse(text))
        except ApiError as error:
            await self._send(error_object(error.reason, error.message))
            return
        except StoreUnavailable:
            await self._send(error_object(UNAVAILABLE, UNAVAILABLE_MESSAGE))
            return
        if isinstance(opened, Refusal):
            await self._send(refusal_object(opened))
            return
        self._starting = self._session_id is None
        self._session_id = opened.session_id
        self._forwarding = asyncio.create_task(self._forward(opened))

    async def _open(self, frame: dict[str, Any]) -> LiveTurn | Refusal:
        turn_input, token = split_turn_input(frame)
        named = take_text(turn_input, SESSION_FIELD)
        if self._session_id is None:
            if named is None:
                return await self._turns.start(StartRequest(turn_input, token))
            return await self._turns.proceed(ContinueRequest(named, turn_input, token))
        if named is not None and parse_session_id(named) != self._session_id:
            message = f"this connection is bound to session '{self._session_id}'"
            raise ApiError(BAD_REQUEST, message)
        if self._busy and token is None:
            # Its own turn holds the claim: the single-claim rule, answered without queueing.
            return await self._turns.refuse_in_flight(self._session_id)
        request = ContinueRequest(self._session_id, turn_input, token or self._token)
        return await self._turns.proceed(request)

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
        elif isinstance(end, TurnFailed) and self._starting:
            self._session_id = self._token = None  # a failed start closed its session
        self._starting = False

    async def _send(self, body: dict[str, Any]) -> None:
        async with self._send_lock:
            with contextlib.suppress(Exception):  # the client may be gone; the turn is not
                await self._socket.send_text(json.dumps(body, separators=(",", ":")))


def _parse(text: str | None) -> dict[str, Any]:
    if text is None:
        raise ApiError(BAD_REQUEST, "frames must be JSON text frames")
    try:
        frame = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(BAD_REQUEST, f"frame is not JSON: {error}") from None
    if not isinstance(frame, dict):
        raise ApiError(BAD_REQUEST, "frame must be a JSON object")
    return frame


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
    await Connection(socket, turns).serve()


@get(WS_PATH, tags=["turns"])
async def websockets_disabled() -> None:
    """What /v1/ws answers on a server started with --no-websockets: 426, never a downgrade."""
    raise ApiError(WEBSOCKETS_DISABLED, "WebSockets are disabled on this server")
