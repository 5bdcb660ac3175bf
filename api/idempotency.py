"""Reading an Idempotency-Key off the wire: the header (a quoted string loses its quotes) or
a WebSocket frame's `idempotencyKey`; the rules it must meet are the domain's."""

from baton.api.errors import BAD_REQUEST, ApiError
from baton.domain.requests import InvalidKey, idempotency_key

KEY_HEADER = "Idempotency-Key"
KEY_FIELD = "idempotencyKey"


def key_from_header(raw: str | None, *, starting: bool) -> str | None:
    if raw is not None and len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
    return checked_key(raw, starting=starting)


def checked_key(value: object, *, starting: bool) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ApiError(BAD_REQUEST, f"{KEY_FIELD} must be a string")
    try:
        return idempotency_key(value, starting=starting)
    except InvalidKey as error:
        raise ApiError(BAD_REQUEST, str(error)) from None
