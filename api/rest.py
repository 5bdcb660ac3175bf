"""The buffered JSON transport: one request, one turn, one JSON reply (PROTOCOL section 5)."""

from typing import Annotated, Any, cast

from litestar import post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody

from api.errors import BAD_REQUEST, TURN_FAILED, ApiError
from api.metrics import Metrics
from api.schemas import ErrorBody, TurnReplyBody, turn_reply_body
from domain.driver import ContinueRequest, OpenTurn, StartRequest, TurnDriver, TurnFailed
from domain.json import JsonObject, JsonValue
from domain.refusals import Refusal

TOKEN_FIELD = "continuationToken"
TOKEN_HEADER = "X-Continuation-Token"
SESSION_FIELD = "sessionId"

TokenHeader = Annotated[
    str | None,
    HeaderParameter(name=TOKEN_HEADER, description="The token, if not in the body (the body wins)"),
]
TurnInput = JSONBody[dict[str, Any]]


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


ERROR_RESPONSES = {
    400: _error("bad-request, missing-token or unexpected-token"),
    404: _error("unknown-session"),
    409: _error("stale-token or in-flight"),
    410: _error("closed"),
    413: _error("too-large"),
    500: _error("turn-failed: the handler raised; the token stays valid"),
}


def take_text(body: dict[str, Any], field: str) -> str | None:
    """Remove a protocol field from the input; null and "" count as absent."""
    value = body.pop(field, None)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(BAD_REQUEST, f"{field} must be a string")
    return value


def split_turn_input(
    data: dict[str, Any], header_token: str | None
) -> tuple[JsonObject, str | None]:
    """The handler's input and the presented token; the body's token wins over the header's."""
    body = dict(data)
    token = take_text(body, TOKEN_FIELD) or header_token or None
    return cast(JsonObject, body), token


class DiscardLiveOutput:
    """A buffered reply has no live channel: records arrive with the reply, deltas are dropped."""

    async def record(self, seq: int, record: JsonValue) -> None:
        return None

    async def delta(self, text: str) -> None:
        return None


async def run_buffered(opened: OpenTurn | Refusal, metrics: Metrics) -> TurnReplyBody:
    if isinstance(opened, Refusal):
        raise ApiError.refused(opened)
    result = await opened.run(DiscardLiveOutput())
    if isinstance(result, TurnFailed):
        raise ApiError(TURN_FAILED, f"turn failed: {result.message}")
    metrics.count_turn(result.outcome.status)
    return turn_reply_body(result)


@post("/v1/session", status_code=200, responses=ERROR_RESPONSES, tags=["turns"])
async def start_session(
    data: TurnInput,
    driver: NamedDependency[TurnDriver],
    metrics: NamedDependency[Metrics],
    token_header: TokenHeader = None,
) -> TurnReplyBody:
    """Start a session: the body is turn 1's input. The reply carries the first token."""
    turn_input, token = split_turn_input(data, token_header)
    session_id = take_text(turn_input, SESSION_FIELD)
    opened = await driver.open_start(StartRequest(turn_input, token, session_id))
    return await run_buffered(opened, metrics)


@post(
    "/v1/session/{session_id:str}/message",
    status_code=200,
    responses=ERROR_RESPONSES,
    tags=["turns"],
)
async def continue_session(
    session_id: FromPath[str],
    data: TurnInput,
    driver: NamedDependency[TurnDriver],
    metrics: NamedDependency[Metrics],
    token_header: TokenHeader = None,
) -> TurnReplyBody:
    """Run the next turn, authorised by the current continuation token (single use)."""
    turn_input, token = split_turn_input(data, token_header)
    opened = await driver.open_continue(ContinueRequest(session_id, turn_input, token))
    return await run_buffered(opened, metrics)
