"""Reading a session, its events, and cancelling its turn (PROTOCOL sections 6.1 to 6.5).

The current token reads the session; so does the token its last turn consumed, within the
recovery window, and then that turn's outcome carries the token it issued ("recovered").
"""

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, QueryParameter

from baton.api.auth import principal_of
from baton.api.errors import BAD_REQUEST, ApiError
from baton.api.rest import JSON, RESPONSES, SESSION_PATH, TokenHeader, wants_stream
from baton.api.schemas import ErrorBody
from baton.api.sse import stream_events
from baton.api.turn_api import TurnApi
from baton.api.wire import stored_objects
from baton.domain.refusals import Refusal
from baton.domain.requests import CancelRequest, ReadRequest
from baton.domain.state import SessionState

MAX_SEQ = 2**31 - 1  # the seq column's range
MAX_WAIT_SECONDS = 60.0
_SEQ = re.compile(r"[0-9]{1,10}")

AnyRequest = Request[Any, Any, Any]
After = Annotated[
    str | None,
    QueryParameter(description="a seq: only the events after it (absent or empty: all)"),
]
LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        description="what an EventSource sends to resume; wins over `after`",
    ),
]
Wait = Annotated[
    float,
    QueryParameter(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for the turn to stop"),
]


class SessionBody(msgspec.Struct, rename="camel"):
    """A session as its holder sees it (PROTOCOL section 6.1)."""

    session_id: str
    status: str
    turn: int
    version: int
    last_outcome: Any
    updated_at: datetime


def session_body(state: SessionState, recovered_token: str | None = None) -> SessionBody:
    last_outcome = state.last_outcome
    if recovered_token is not None and last_outcome is not None:
        last_outcome = {**last_outcome, "continuationToken": recovered_token, "recovered": True}
    return SessionBody(
        session_id=state.session_id,
        status=state.status.value,
        turn=state.turn,
        version=state.version,
        last_outcome=last_outcome,
        updated_at=state.updated_at,
    )


def seq_after(after: str | None, last_event_id: str | None) -> int:
    """The seq a read starts after: `Last-Event-ID` wins over `after`; empty is absent.
    Both are checked, so a malformed `after` is refused even when the header overrides it:
    whatever a request carries is either valid or a bad request."""
    by_after = _seq("after", after)
    by_header = _seq("Last-Event-ID", last_event_id)
    return by_header if by_header is not None else (by_after or 0)


def _seq(named: str, raw: str | None) -> int | None:
    if not raw:
        return None
    if _SEQ.fullmatch(raw) is None or int(raw) > MAX_SEQ:
        raise ApiError(BAD_REQUEST, f"{named} must be a seq, a whole number from 0 to {MAX_SEQ}")
    return int(raw)


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


READ_RESPONSES = {code: spec for code, spec in RESPONSES.items() if code in {400, 404, 409, 410}}


@get(SESSION_PATH, responses=READ_RESPONSES, tags=["sessions"])
async def read_session(
    request: AnyRequest,
    session_id: FromPath[str],
    turns: NamedDependency[TurnApi],
    token_header: TokenHeader = None,
) -> SessionBody:
    """The session, for its current token, or for the token its last turn consumed (then its
    last outcome carries the token that turn issued). Consumes nothing."""
    reading = await turns.read(
        ReadRequest(session_id, token_header, principal=principal_of(request))
    )
    if isinstance(reading, Refusal):
        raise ApiError.refused(reading)
    return session_body(reading.state, reading.recovered_token)


@get(
    "/session/{session_id:str}/events",
    responses={
        **READ_RESPONSES,
        200: ResponseSpec(
            data_container=list[dict[str, Any]],
            description="The stored events after `after`; with `Accept: text/event-stream`, "
            "a stream of them that follows a running turn to its outcome or error",
        ),
    },
    tags=["sessions"],
)
async def session_events(
    request: AnyRequest,
    session_id: FromPath[str],
    turns: NamedDependency[TurnApi],
    token_header: TokenHeader = None,
    after: After = None,
    last_event_id: LastEventId = None,
) -> Response[Any]:
    """The session's stored events after a seq, as turn event objects with their seqs."""
    start = seq_after(after, last_event_id)
    view = await turns.events(
        ReadRequest(session_id, token_header, principal=principal_of(request))
    )
    if isinstance(view, Refusal):
        raise ApiError.refused(view)
    if wants_stream(request):
        return await stream_events(view, start, turns.ping_seconds, turns.instruments.sse_streams)
    stored = stored_objects(await view.replay(start), view.recovered)
    return Response([body for body, _ in stored], media_type=JSON)


@post(
    "/session/{session_id:str}/cancel",
    status_code=200,
    responses={
        **READ_RESPONSES,
        202: ResponseSpec(
            data_container=SessionBody, description="asked, but the turn has not stopped yet"
        ),
    },
    tags=["sessions"],
)
async def cancel_turn(
    request: AnyRequest,
    session_id: FromPath[str],
    turns: NamedDependency[TurnApi],
    token_header: TokenHeader = None,
    wait: Wait = 10.0,
) -> Response[SessionBody]:
    """Stop the session's running turn, wherever it runs; the token stays valid. 200 once the
    turn has stopped (or if none was running), 202 if it has not within `wait` seconds."""
    asked = CancelRequest(session_id, token_header, principal_of(request))
    cancelled = await turns.cancel(asked, wait)
    if isinstance(cancelled, Refusal):
        raise ApiError.refused(cancelled)
    state, stopped = cancelled
    return Response(session_body(state), status_code=200 if stopped else 202)
