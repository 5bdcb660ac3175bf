"""One client per transport, each speaking to a real server with a library the project did
not write (httpx, httpx-sse, websockets), and each reduced to the same `Answer`."""

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import websockets
from httpx_sse import aconnect_sse

from tests.conformance.streams import dispatched

TIMEOUT = 30


@dataclass
class Answer:
    """What one turn request came back with, whatever carried it."""

    kind: str  # "outcome", or "error" for a refusal or a failed turn
    reason: str | None = None
    message: str | None = None
    http_status: int | None = None  # None over WebSocket: errors travel in-band
    outcome: dict[str, Any] = field(default_factory=dict)  # sessionId, status, turn, token...
    records: list[Any] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # the types of the events streamed
    content_type: str | None = None

    @property
    def token(self) -> str:
        return str(self.outcome["continuationToken"])

    @property
    def session_id(self) -> str:
        return str(self.outcome["sessionId"])


def _error(body: dict[str, Any], status: int | None, content_type: str | None) -> Answer:
    message = body.get("error", body.get("message"))
    return Answer("error", body["reason"], message, status, content_type=content_type)


class TurnClient(Protocol):
    name: str

    async def start(self, frame: dict[str, Any]) -> Answer: ...

    async def send(self, session_id: str, token: str | None, frame: dict[str, Any]) -> Answer: ...


def _body(token: str | None, frame: dict[str, Any]) -> dict[str, Any]:
    return {**frame, "continuationToken": token} if token is not None else dict(frame)


class BufferedClient:
    name = "buffered"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def _post(self, path: str, body: dict[str, Any]) -> Answer:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT) as client:
            response = await client.post(path, json=body)
        content_type = response.headers.get("content-type")
        if response.status_code != 200:
            return _error(response.json(), response.status_code, content_type)
        reply = response.json()
        records = reply.pop("records")
        return Answer(
            "outcome", http_status=200, outcome=reply, records=records, content_type=content_type
        )

    async def start(self, frame: dict[str, Any]) -> Answer:
        return await self._post("/v1/session", frame)

    async def send(self, session_id: str, token: str | None, frame: dict[str, Any]) -> Answer:
        return await self._post(f"/v1/session/{session_id}/message", _body(token, frame))


class SseClient:
    name = "sse"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def _post(self, path: str, body: dict[str, Any]) -> Answer:
        async with (
            httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT) as client,
            aconnect_sse(client, "POST", path, json=body) as source,
        ):
            response = source.response
            content_type = response.headers.get("content-type")
            if not (content_type or "").startswith("text/event-stream"):
                await response.aread()
                return _error(response.json(), response.status_code, content_type)
            answer = Answer("outcome", http_status=response.status_code, content_type=content_type)
            async for event in dispatched(source):
                answer.events.append(event.event)
                data = json.loads(event.data)
                assert data["type"] == event.event, (data, event.event)
                if event.event == "record":
                    answer.records.append(data["record"])
                elif event.event == "outcome":
                    answer.outcome = {key: value for key, value in data.items() if key != "type"}
                elif event.event == "error":
                    answer.kind, answer.reason, answer.message = (
                        "error",
                        data["reason"],
                        data["message"],
                    )
            return answer

    async def start(self, frame: dict[str, Any]) -> Answer:
        return await self._post("/v1/session", frame)

    async def send(self, session_id: str, token: str | None, frame: dict[str, Any]) -> Answer:
        return await self._post(f"/v1/session/{session_id}/message", _body(token, frame))


async def read_turn(socket: Any) -> Answer:
    """Frames up to the turn's last one (an outcome or an error)."""
    answer = Answer("outcome")
    while True:
        data = json.loads(await socket.recv())
        answer.events.append(data["type"])
        if data["type"] == "record":
            answer.records.append(data["record"])
        elif data["type"] == "outcome":
            answer.outcome = {key: value for key, value in data.items() if key != "type"}
            return answer
        elif data["type"] == "error":
            answer.kind, answer.reason, answer.message = "error", data["reason"], data["message"]
            return answer


class WebSocketClient:
    """Each request on a fresh connection: a start, or an attach (sessionId + token), which
    is the WebSocket form of a REST continue."""

    name = "websocket"

    def __init__(self, base_url: str) -> None:
        self.url = base_url.replace("http://", "ws://") + "/v1/ws"

    async def _exchange(self, frame: dict[str, Any]) -> Answer:
        async with websockets.connect(self.url, open_timeout=TIMEOUT) as socket:
            await socket.send(json.dumps(frame))
            return await read_turn(socket)

    async def start(self, frame: dict[str, Any]) -> Answer:
        return await self._exchange(frame)

    async def send(self, session_id: str, token: str | None, frame: dict[str, Any]) -> Answer:
        return await self._exchange({**_body(token, frame), "sessionId": session_id})


TRANSPORTS = {"buffered": BufferedClient, "sse": SseClient, "websocket": WebSocketClient}
