"""Reading a turn request's JSON object: the handler's input and the protocol's fields.

One parser for every transport, so a REST body and a WebSocket frame are read by the same
rules and refused for the same reasons: JSON (msgspec, which refuses NaN and Infinity), an
object, and a value both databases store as it came (domain.json.json_problem). Which
values count as presented is the domain's rule (domain/requests.py).
"""

from typing import Any, cast

import msgspec

from baton.api.errors import BAD_REQUEST, ApiError
from baton.domain.json import MAX_DEPTH, JsonObject, json_problem
from baton.domain.requests import present, presented_token

TOKEN_FIELD = "continuationToken"
SESSION_FIELD = "sessionId"
BODY, FRAME = "request body", "frame"


def decode_object(raw: bytes | str, what: str = BODY) -> dict[str, Any]:
    """A request's JSON object, or a bad request that says what is wrong with it."""
    if not raw:
        raise ApiError(BAD_REQUEST, f"{what} must be a JSON object")
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        raise ApiError(BAD_REQUEST, f"{what} is not JSON: {error}") from None
    except RecursionError:
        raise ApiError(BAD_REQUEST, f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise ApiError(BAD_REQUEST, f"{what} must be a JSON object")
    problem = json_problem(value)
    if problem is not None:
        raise ApiError(BAD_REQUEST, f"{what} cannot be stored: {problem}")
    return value


def take_text(body: dict[str, Any], field: str) -> str | None:
    """Remove a protocol field from the input: a string, or None when absent (null and ""
    included); any other type is a bad request."""
    value = body.pop(field, None)
    if value is not None and not isinstance(value, str):
        raise ApiError(BAD_REQUEST, f"{field} must be a string")
    return present(value)


def split_turn_input(
    data: dict[str, Any], header_token: str | None = None
) -> tuple[JsonObject, str | None]:
    """The handler's input and the presented token; the body's token wins over the header's."""
    body = dict(data)
    token = presented_token(take_text(body, TOKEN_FIELD), header_token)
    return cast(JsonObject, body), token
