"""Reading a turn request's JSON object: the handler's input and the protocol's fields.

Shared by every transport, so a frame and a body are read by the same rules; which values
count as presented is the domain's rule (domain/requests.py).
"""

from typing import Any, cast

from api.errors import BAD_REQUEST, ApiError
from domain.json import JsonObject
from domain.requests import present, presented_token

TOKEN_FIELD = "continuationToken"
SESSION_FIELD = "sessionId"


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
