"""Virtual clients: each owns one connection and (but for start-only) one session, and
chains its tokens turn after turn, as a real client of the protocol does.

Every client has `setup` (open, start its session: not measured), `turn` (one measured
request) and `recover` (after a refusal or an error: reconnect and start a fresh session,
since the token it held may be gone). `turn` returns a measure.Result.
"""

from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect

from bench.http_client import HttpConnection, ProtocolError, request_bytes
from bench.measure import COMMITTED, ERROR, OK, REFUSED, Result
from bench.wire import SseParser, WireObject, decode_wire

TURN_BODY = b'{"message":"x"}'
TURN_FRAME = TURN_BODY.decode()
START_PATH = "/v1/session"
TOKEN_HEADER = "X-Continuation-Token"
EVENT_STREAM = (("Accept", "text/event-stream"),)
ECHO_PATH = "/echo"  # the http-floor app's one endpoint
WS_PATH = "/v1/ws"
FINAL_EVENTS = ("outcome", "error")


class SetupFailed(Exception):
    """A client could not start its session: the scenario cannot run."""


class VirtualClient(Protocol):
    async def setup(self) -> None: ...

    async def turn(self) -> Result: ...

    async def recover(self) -> None: ...

    async def close(self) -> None: ...


# The protocol's loud "no" (PROTOCOL section 3): counted as refusals. Anything else that is
# not a committed turn (turn-failed, internal-error, a transport failure) is an error.
REFUSAL_REASONS = frozenset(
    {
        "unknown-session",
        "missing-token",
        "stale-token",
        "in-flight",
        "closed",
        "unexpected-token",
        "bad-request",
        "too-large",
    }
)


def judge(status: int, reply: WireObject) -> Result:
    """What a reply (a buffered body, or a stream's or socket's final event) means for the
    benchmark. In-band events (SSE, WebSocket) come with status 200."""
    if status == 200 and reply.continuation_token:
        return COMMITTED
    if status == 200 and reply.type != "error":
        return REFUSED, f"outcome-{reply.status}"  # contended: nothing committed
    if reply.reason in REFUSAL_REASONS:
        return REFUSED, reply.reason or ""
    return ERROR, f"{reply.reason or 'http'}-{status}"


class RestClient:
    """Buffered JSON turns, or SSE turns with `stream=True`, over one keep-alive connection."""

    def __init__(self, host: str, port: int, *, stream: bool = False) -> None:
        self._http = HttpConnection(host, port)
        self._extra = EVENT_STREAM if stream else ()
        self._start = request_bytes(
            "POST", START_PATH, self._http.authority, TURN_BODY, self._extra
        )
        self._continue_path = ""
        self._token = ""

    async def setup(self) -> None:
        status, reply = await self._exchange(self._start)
        if judge(status, reply)[0] != OK or reply.session_id is None:
            raise SetupFailed(f"start answered {status} {reply.reason}")
        self._continue_path = f"{START_PATH}/{reply.session_id}/message"
        self._token = reply.continuation_token or ""

    async def turn(self) -> Result:
        headers = (*self._extra, (TOKEN_HEADER, self._token))
        request = request_bytes(
            "POST", self._continue_path, self._http.authority, TURN_BODY, headers
        )
        status, reply = await self._exchange(request)
        result = judge(status, reply)
        if result[0] == OK:
            self._token = reply.continuation_token or ""
        return result

    async def _exchange(self, request: bytes) -> tuple[int, WireObject]:
        if not self._extra:
            response = await self._http.request(request)
            return response.status, decode_wire(response.body)
        return await self._exchange_stream(request)

    async def _exchange_stream(self, request: bytes) -> tuple[int, WireObject]:
        """Read the stream to its final event (outcome or error), then to its end so the
        connection can carry the next request."""
        await self._http.send(request)
        status, head = await self._http.read_head()
        if not self._http.is_chunked(head):  # a refusal: a plain JSON 4xx, never a stream
            body = await self._http.read_sized_body(head)
            await self._http.finish(head)
            return status, decode_wire(body)
        parser, final = SseParser(), None
        while chunk := await self._http.read_chunk():
            for event, data in parser.feed(chunk):
                if event in FINAL_EVENTS:
                    final = decode_wire(data)
        await self._http.finish(head)
        if final is None:
            raise ProtocolError("an event stream ended without an outcome or error event")
        return status, final

    async def recover(self) -> None:
        await self._http.close()
        await self.setup()

    async def close(self) -> None:
        await self._http.close()


class StartClient:
    """Start-only: every request starts (and commits turn 1 of) a new session."""

    def __init__(self, host: str, port: int) -> None:
        self._http = HttpConnection(host, port)
        self._start = request_bytes("POST", START_PATH, self._http.authority, TURN_BODY)

    async def setup(self) -> None:
        await self._http.open()

    async def turn(self) -> Result:
        response = await self._http.request(self._start)
        return judge(response.status, decode_wire(response.body))

    async def recover(self) -> None:
        await self._http.close()
        await self.setup()

    async def close(self) -> None:
        await self._http.close()


class EchoClient:
    """The http-floor: the same client and request size against a trivial JSON endpoint."""

    def __init__(self, host: str, port: int) -> None:
        self._http = HttpConnection(host, port)
        self._echo = request_bytes("POST", ECHO_PATH, self._http.authority, TURN_BODY)

    async def setup(self) -> None:
        await self._http.open()

    async def turn(self) -> Result:
        response = await self._http.request(self._echo)
        decode_wire(response.body)  # decoded like a turn's reply, so both cost the same
        return COMMITTED if response.status == 200 else (ERROR, f"http-{response.status}")

    async def recover(self) -> None:
        await self._http.close()
        await self.setup()

    async def close(self) -> None:
        await self._http.close()


class WebSocketClient:
    """One connection at /v1/ws: the first frame starts and binds a session, then the
    connection itself authorises each turn (no token in the frames)."""

    def __init__(self, host: str, port: int) -> None:
        self._uri = f"ws://{host}:{port}{WS_PATH}"
        self._socket: ClientConnection | None = None

    async def setup(self) -> None:
        # No permessage-deflate: buffered and SSE turns are not compressed either, and
        # deflating 200-byte frames only burns CPU on both ends of a shared 2-core box.
        self._socket = await connect(self._uri, compression=None)
        if await self.turn() != COMMITTED:
            raise SetupFailed("the first frame did not start a session")

    async def turn(self) -> Result:
        assert self._socket is not None
        await self._socket.send(TURN_FRAME)
        while True:
            reply = decode_wire(await self._socket.recv())
            if reply.type in FINAL_EVENTS:
                return judge(200, reply)

    async def recover(self) -> None:
        await self.close()
        await self.setup()

    async def close(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()
