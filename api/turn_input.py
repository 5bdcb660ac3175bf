"""Reading a turn request's JSON object: the handler's input and the protocol's fields.

Shared by every transport, so a frame and a body are read by the same rules.
"""

from typing import Any, cast

from api.errors import BAD_REQUEST, ApiError
from domain.json import JsonObject

TOKEN_FIELD = "continuationToken"
SESSION_FIELD = "sessionId"


def take_text(body: dict[str, Any], field: str) -> str | None:
    """Remove a protocol field from the input; null and "" count as absent."""
    value = body.pop(field, None)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(BAD_REQUEST, f"{field} must be a string")
    return value


def split_turn_input(
    data: dict[str, Any], header_token: str | None = None
) -> tuple[JsonObject, str | None]:
    """The handler's input and the presented token; the body's token wins over the header's."""
    body = dict(data)
    token = take_text(body, TOKEN_FIELD) or header_token or None
    return cast(JsonObject, body), token
