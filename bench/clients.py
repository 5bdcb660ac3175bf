"""Virtual clients: each owns one connection and (but for start-only) one session, and
chains its tokens turn after turn, as a real client of the protocol does.

Every client has `setup` (open, start its session: not measured), `turn` (one measured
request) and `recover` (after a refusal or an error: reconnect and start a fresh session,
since the token it held may be gone). `turn` returns a measure.Result.

The recovery clients (PROTOCOL section 6) measure a request that is not a turn: a resumed
stream of the last turn's events, or an idempotent retry of the last turn. Their sessions
commit a few turns in `setup`, and the measured requests commit nothing.
"""

import secrets
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect

from bench.http_client import HttpConnection, ProtocolError, request_bytes
from bench.measure import COMMITTED, ERROR, OK, REFUSED, Result
from bench.wire import SseParser, WireObject, decode_wire

TURN_BODY = b'{"message":"x"}'
TURN_FRAME = TURN_BODY.decode()
START_PATH = "/v1/session"
TOKEN_HEADER = "X-Continuation-Token"
KEY_HEADER = "Idempotency-Key"
LAST_EVENT_ID = "Last-Event-ID"
EVENT_STREAM = (("Accept", "text/event-stream"),)
ECHO_PATH = "/echo"  # the http-floor app's one endpoint
WS_PATH = "/v1/ws"
FINAL_EVENTS = ("outcome", "error")
REPLAYED = b"\r\nidempotent-replayed: true\r\n"  # in a lower-cased response head
# The turns a resume or retry client's session commits before the clock runs (the start
# included): the measured requests then concern a session with some history behind it.
SETUP_TURNS = 3


def fresh_key() -> str:
    """A new random Idempotency-Key, as a client library makes one for every turn: 128 bits,
    22 characters (a start's minimum, PROTOCOL section 6.4)."""
    return secrets.token_urlsafe(16)


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


async def exchange_stream(http: HttpConnection, request: bytes) -> tuple[int, WireObject, str]:
    """Send a request that answers an event stream, and read the stream to its final event
    (outcome or error), then to its end so the connection can carry the next request. The
    status, the final event, and the stream's first id (its priming message's)."""
    await http.send(request)
    status, head = await http.read_head()
    if not http.is_chunked(head):  # a refusal: a plain JSON 4xx, never a stream
        body = await http.read_sized_body(head)
        await http.finish(head)
        return status, decode_wire(body), ""
    parser, final = SseParser(), None
    while chunk := await http.read_chunk():
        for event, data in parser.feed(chunk):
            if event in FINAL_EVENTS:
                final = decode_wire(data)
    await http.finish(head)
    if final is None:
        raise ProtocolError("an event stream ended without an outcome or error event")
    return status, final, parser.first_id or ""


class RestClient:
    """Buffered JSON turns, or SSE turns with `stream=True`, over one keep-alive connection;
    with `keyed=True`, every request (the start too) carries a fresh Idempotency-Key.

    After each committed turn it knows what a client would keep to recover it: the session,
    its current token and turn, the exact request of that turn (a retry resends it), and on
    a stream the priming message's id, the claim's seq (a dropped stream resumes there)."""

    def __init__(self, host: str, port: int, *, stream: bool = False, keyed: bool = False) -> None:
        self.http = HttpConnection(host, port)
        self._extra = EVENT_STREAM if stream else ()
        self._keyed = keyed
        self._continue_path = ""
        self.session_id = ""
        self.token = ""
        self.turn_number = 0
        self.last_request = b""
        self.claim_seq = ""  # streams only

    def _headers(self, *headers: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        key = ((KEY_HEADER, fresh_key()),) if self._keyed else ()
        return (*self._extra, *headers, *key)

    async def setup(self) -> None:
        start = request_bytes("POST", START_PATH, self.http.authority, TURN_BODY, self._headers())
        status, reply = await self._exchange(start)
        if judge(status, reply)[0] != OK or reply.session_id is None:
            raise SetupFailed(f"start answered {status} {reply.reason}")
        self.session_id = reply.session_id
        self._continue_path = f"{START_PATH}/{reply.session_id}/message"

    def adopt(self, session_id: str, token: str) -> None:
        """Take over a session someone else started, at its current token (instead of
        `setup`): the flood's owner runs turns at a session whose id the flooder knows."""
        self.session_id, self.token = session_id, token
        self._continue_path = f"{START_PATH}/{session_id}/message"

    async def turn(self) -> Result:
        headers = self._headers((TOKEN_HEADER, self.token))
        request = request_bytes(
            "POST", self._continue_path, self.http.authority, TURN_BODY, headers
        )
        status, reply = await self._exchange(request)
        return judge(status, reply)

    async def _exchange(self, request: bytes) -> tuple[int, WireObject]:
        if not self._extra:
            response = await self.http.request(request)
            status, reply = response.status, decode_wire(response.body)
        else:
            status, reply, claim_seq = await exchange_stream(self.http, request)
            self.claim_seq = claim_seq
        if status == 200 and reply.continuation_token:  # committed: what a client keeps
            self.token = reply.continuation_token
            self.turn_number = reply.turn or 0
            self.last_request = request
        return status, reply

    async def recover(self) -> None:
        await self.http.close()
        await self.setup()

    async def close(self) -> None:
        await self.http.close()


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


async def _session_with_history(client: RestClient) -> None:
    """Start the client's session and commit SETUP_TURNS turns in it."""
    await client.setup()
    for _ in range(SETUP_TURNS - 1):
        result = await client.turn()
        if result[0] != OK:
            raise SetupFailed(f"a setup turn answered {result}")


class ResumeClient:
    """Resumes its session's last turn stream, again and again, as a client whose stream
    dropped after the priming message would (PROTOCOL section 6.3): GET .../events with
    `Last-Event-ID` = the priming message's id (the last turn's claim seq) and the current
    token, read to the end. The session is idle, so each stream replays that turn's records
    (none with --handler bench) and its outcome, and ends."""

    def __init__(self, host: str, port: int) -> None:
        self._session = RestClient(host, port, stream=True)
        self._resume = b""
        self._turn = 0

    async def setup(self) -> None:
        session = self._session
        await _session_with_history(session)
        if not session.claim_seq:
            raise SetupFailed("the last turn's stream had no priming id")
        path = f"{START_PATH}/{session.session_id}/events"
        headers = (
            *EVENT_STREAM,
            (LAST_EVENT_ID, session.claim_seq),
            (TOKEN_HEADER, session.token),
        )
        self._resume = request_bytes("GET", path, session.http.authority, b"", headers)
        self._turn = session.turn_number

    async def turn(self) -> Result:
        status, final, _ = await exchange_stream(self._session.http, self._resume)
        if status == 200 and final.type == "outcome":
            # The last turn's outcome, read with the current token: it carries no token.
            return COMMITTED if final.turn == self._turn else (ERROR, f"resumed-turn-{final.turn}")
        return judge(status, final)

    async def recover(self) -> None:
        await self._session.http.close()
        await self.setup()

    async def close(self) -> None:
        await self._session.http.close()


class RetryClient:
    """Retries its session's last committed turn, again and again, with the same
    Idempotency-Key, token and input (the very same request): the server answers the stored
    reply, marked `Idempotent-Replayed: true` (PROTOCOL section 6.4), and runs nothing."""

    def __init__(self, host: str, port: int) -> None:
        self._session = RestClient(host, port, keyed=True)
        self._retry = b""
        self._token = ""  # the token the replayed turn issued: the reply must carry it

    async def setup(self) -> None:
        await _session_with_history(self._session)
        self._retry, self._token = self._session.last_request, self._session.token

    async def turn(self) -> Result:
        response = await self._session.http.request(self._retry)
        reply = decode_wire(response.body)
        result = judge(response.status, reply)
        if result[0] != OK:
            return result
        if REPLAYED not in response.head:
            return ERROR, "not-marked-replayed"
        if reply.continuation_token != self._token:
            return ERROR, "replayed-another-token"
        return result

    async def recover(self) -> None:
        await self._session.http.close()
        await self.setup()

    async def close(self) -> None:
        await self._session.http.close()
