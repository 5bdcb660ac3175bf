"""A session's turns over one WebSocket at /v1/ws (`pip install 'baton-client[ws]'`).

    async with AsyncClient(url) as client:
        session = client.session(FileTokenStore("session.json"))
        async with websocket(session) as socket:
            outcome = await socket.send({"message": "hello"})
            async for event in socket.stream({"message": "again"}):
                ...

The session is an ordinary AsyncSession (this module works on its internals, as a second
transport of the same package): the same token, the same store, the same pending
turn bookkeeping, so turns can go over the socket and over HTTP interchangeably. Every turn
frame carries its `idempotencyKey` and names the session with its current token (an attach
on a fresh connection). If the connection drops, or cannot be opened, it is opened again (the
client's RetryPolicy) and the turn sent again with the same key and token: the server replays
a turn that committed (its records, then its outcome marked replayed), answers `in-flight`
while it still runs (waited out), or runs it if it never did. Live records over a socket
carry no seq (`Record.seq` is 0); replayed ones do.
"""

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from baton_client.errors import BatonError, InFlight, Unavailable
from baton_client.models import Delta, Event, Input, Outcome, Record, outcome_from
from baton_client.retry import Dropped
from baton_client.session import AsyncSession
from baton_client.transport import in_band_error

WS_PATH = "/v1/ws"


class WebSocketTurns:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        base = str(session._t.http.base_url).rstrip("/")
        self.url = base.replace("http", "ws", 1) + WS_PATH
        self._socket: ClientConnection | None = None

    async def send(self, input: Input) -> Outcome:
        """Run one turn over the socket; its outcome."""
        outcome: Outcome | None = None
        async for event in self.stream(input):
            if isinstance(event, Outcome):
                outcome = event
        assert outcome is not None  # noqa: S101 - stream() ends with an outcome or raises
        return outcome

    async def stream(self, input: Input) -> AsyncIterator[Event]:
        """Run one turn over the socket: its records and deltas, then its outcome."""
        session = self.session
        async with session._lock:
            key = await session._prepare(input)
            attempts, ended = session._t.attempts(), False
            try:
                while not ended:
                    try:
                        async with contextlib.aclosing(self._attempt(input, key)) as events:
                            async for event in events:
                                if isinstance(event, Outcome):
                                    session._settle(event)
                                    ended = True
                                yield event
                    except (OSError, ConnectionClosed, InvalidHandshake) as error:
                        self._socket = None
                        await attempts.absorb(Dropped(f"{type(error).__name__}: {error}"))
                    except (InFlight, Unavailable) as error:
                        await attempts.absorb(error)
                    except BatonError as error:
                        session._failed(error)
                        raise
            finally:
                if not ended:  # what is left of this turn must not reach the next one
                    await self.aclose()

    async def aclose(self) -> None:
        if self._socket is not None:
            await self._socket.close()
            self._socket = None

    async def _attempt(self, input: Input, key: str) -> AsyncGenerator[Event]:
        if self._socket is None:
            self._socket = await connect(self.url, open_timeout=10)
        frame: dict[str, Any] = {**input, "idempotencyKey": key}
        if self.session.started:
            frame["sessionId"] = self.session.session_id
            frame["continuationToken"] = self.session.continuation_token
        await self._socket.send(json.dumps(frame))
        while True:
            event = _event(json.loads(await self._socket.recv()))
            if event is not None:
                yield event
                if isinstance(event, Outcome):
                    return


def _event(body: dict[str, Any]) -> Event | None:
    kind = body.get("type")
    if kind == "record":
        return Record(int(body.get("seq", 0)), body.get("record"))
    if kind == "delta":
        return Delta(str(body.get("text", "")))
    if kind == "outcome":
        return outcome_from(body, replayed=bool(body.get("replayed")))
    if kind == "error":
        error: BatonError = in_band_error(body)
        raise error
    return None


@asynccontextmanager
async def websocket(session: AsyncSession) -> AsyncIterator[WebSocketTurns]:
    """The session's turns over one WebSocket, closed at the end of the block."""
    turns = WebSocketTurns(session)
    try:
        yield turns
    finally:
        await turns.aclose()
