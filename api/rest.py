"""The turn endpoints: buffered JSON by default, SSE when the client accepts an event stream.

Both answer every refusal before anything is streamed, so a refused request gets a plain
JSON 4xx and never a half-open stream (PROTOCOL section 3). A retry of a committed turn with
its Idempotency-Key gets that turn's reply again, marked `Idempotent-Replayed: true`.
"""

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter

from baton.api.auth import principal_of
from baton.api.errors import ApiError
from baton.api.idempotency import KEY_HEADER, key_from_header
from baton.api.metrics import REST, SSE
from baton.api.schemas import ErrorBody, TurnReplyBody
from baton.api.sse import EVENT_STREAM, stream_replay, stream_turn
from baton.api.turn_api import Opened, TurnApi
from baton.api.turn_input import SESSION_FIELD, decode_object, split_turn_input, take_text
from baton.api.wire import failure_of, turn_reply_body
from baton.domain.refusals import Refusal
from baton.domain.requests import CloseRequest, ContinueRequest, StartRequest
from baton.domain.turn import TurnReply

TOKEN_HEADER = "X-Continuation-Token"
JSON = "application/json"
REPLAYED = {"Idempotent-Replayed": "true"}

TokenHeader = Annotated[
    str | None,
    HeaderParameter(name=TOKEN_HEADER, description="The token, if not in the body (the body wins)"),
]
KeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=KEY_HEADER,
        description="1 to 255 visible ASCII characters (at least 22 on a start): a retry with "
        "the same key, token and input gets the committed turn's reply again",
    ),
]
AnyRequest = Request[Any, Any, Any]


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


RESPONSES = {
    200: ResponseSpec(
        data_container=TurnReplyBody,
        description="The turn's outcome; with `Accept: text/event-stream`, an SSE stream of "
        "`record` and `delta` events ending in one `outcome` or `error` event",
    ),
    400: _error("bad-request, missing-token or unexpected-token"),
    404: _error("unknown-session"),
    409: _error("stale-token, in-flight, or cancelled (the turn's holder stopped it)"),
    410: _error("closed"),
    413: _error("too-large"),
    422: _error("idempotency-mismatch: this key came with another input"),
    500: _error("turn-failed: the handler raised; the token stays valid"),
}


def wants_stream(request: AnyRequest) -> bool:
    accept = request.headers.get("accept")
    if not accept or EVENT_STREAM not in accept:
        return False  # the common case, decided without parsing the header
    if accept == EVENT_STREAM:
        return True  # what a streaming client sends, also decided without parsing it
    return request.accept.best_match([JSON, EVENT_STREAM], default=JSON) == EVENT_STREAM


def transport_of(request: AnyRequest) -> str:
    """How the turn will be carried, as metrics and traces name it."""
    return SSE if wants_stream(request) else REST


def events_location(prefix: str, session_id: str) -> str:
    """Where a session's events are read, and a dropped turn stream resumes."""
    return f"{prefix}/session/{session_id}/events"


# The endpoints return a Response either way: Litestar lets a handler whose annotation is a
# Response keep the response's own media type; any other annotation forces JSON onto the
# SSE stream too. The 200 body is documented in RESPONSES instead.
TurnResponse = Response[Any]


async def answer(request: AnyRequest, opened: Opened, turns: TurnApi) -> TurnResponse:
    if isinstance(opened, Refusal):
        raise ApiError.refused(opened)
    if isinstance(opened, TurnReply):  # a retry of a turn that committed already
        if wants_stream(request):
            return stream_replay(opened, REPLAYED, turns.instruments.sse_streams)
        return Response(turn_reply_body(opened), media_type=JSON, headers=REPLAYED)
    if wants_stream(request):
        location = events_location(turns.prefix, opened.session_id)
        return stream_turn(opened, turns.ping_seconds, location, turns.instruments.sse_streams)
    end = await opened.end()
    if not isinstance(end, TurnReply):
        raise ApiError(*failure_of(end))
    return Response(turn_reply_body(end), media_type=JSON)


async def turn_body(request: AnyRequest) -> dict[str, Any]:
    """The request's JSON object, read by the parser every transport shares (Litestar's own
    would read a WebSocket frame's twin by other rules)."""
    return decode_object(await request.body())


# A session's own path: DELETE here, GET in api/sessions.py.
SESSION_PATH = "/session/{session_id:str}"


@post("/session", status_code=200, responses=RESPONSES, tags=["turns"])
async def start_session(
    request: AnyRequest,
    turns: NamedDependency[TurnApi],
    token_header: TokenHeader = None,
    key_header: KeyHeader = None,
) -> TurnResponse:
    """Start a session: the body is turn 1's input. The reply carries the first token."""
    turn_input, token = split_turn_input(await turn_body(request), token_header)
    session_id = take_text(turn_input, SESSION_FIELD)
    key = key_from_header(key_header, starting=True)
    opened = await turns.start(
        StartRequest(turn_input, token, session_id, key, principal_of(request)),
        transport_of(request),
    )
    return await answer(request, opened, turns)


class ClosedBody(msgspec.Struct, rename="camel"):
    session_id: str
    status: str
    turn: int


@delete(
    SESSION_PATH,
    status_code=200,
    responses={k: v for k, v in RESPONSES.items() if k not in {200, 413, 422, 500}},
    tags=["turns"],
)
async def delete_session(
    request: AnyRequest,
    session_id: FromPath[str],
    turns: NamedDependency[TurnApi],
    token_header: TokenHeader = None,
) -> ClosedBody:
    """Close a session with its current token: later continues get 410 closed."""
    closed = await turns.close(CloseRequest(session_id, token_header, principal_of(request)))
    if isinstance(closed, Refusal):
        raise ApiError.refused(closed)
    return ClosedBody(session_id=closed.session_id, status=closed.status.value, turn=closed.turn)


@post(
    "/session/{session_id:str}/message",
    status_code=200,
    responses=RESPONSES,
    tags=["turns"],
)
async def continue_session(
    request: AnyRequest,
    session_id: FromPath[str],
    turns: NamedDependency[TurnApi],
    token_header: TokenHeader = None,
    key_header: KeyHeader = None,
) -> TurnResponse:
    """Run the next turn, authorised by the current continuation token (single use)."""
    turn_input, token = split_turn_input(await turn_body(request), token_header)
    key = key_from_header(key_header, starting=False)
    opened = await turns.proceed(
        ContinueRequest(session_id, turn_input, token, key, principal_of(request)),
        transport_of(request),
    )
    return await answer(request, opened, turns)
