"""Every error the API answers, mapped to HTTP in this one place."""

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap

from baton.api.metrics import Metrics
from baton.api.reasons import (
    BAD_REQUEST,
    CANCELLED,
    INTERNAL,
    TOO_LARGE,
    TOO_MANY_REFUSALS,
    TURN_FAILED,
    UNAUTHENTICATED,
    UNAUTHORIZED,
    UNAVAILABLE,
    WEBSOCKETS_DISABLED,
)
from baton.api.schemas import ErrorBody
from baton.domain.ports import StoreUnavailable
from baton.domain.refusals import Refusal, RefusalReason

UNAVAILABLE_MESSAGE = "the database is unavailable; retry with the same token"

log = logging.getLogger("baton.api")

AnyRequest = Request[Any, Any, Any]

# Re-exported: transports take the reasons from here, with the status they map to.
__all__ = [
    "BAD_REQUEST",
    "INTERNAL",
    "TOO_LARGE",
    "TOO_MANY_REFUSALS",
    "TURN_FAILED",
    "UNAUTHENTICATED",
    "UNAUTHORIZED",
    "UNAVAILABLE",
    "WEBSOCKETS_DISABLED",
    "ApiError",
]

RETRY_AFTER_SECONDS = 1  # what a 503 asks a client to wait before it tries again

STATUS_BY_REASON: dict[str, int] = {
    RefusalReason.UNKNOWN_SESSION: 404,
    RefusalReason.MISSING_TOKEN: 400,
    RefusalReason.STALE_TOKEN: 409,
    RefusalReason.IN_FLIGHT: 409,
    RefusalReason.CLOSED: 410,
    RefusalReason.UNEXPECTED_TOKEN: 400,
    RefusalReason.IDEMPOTENCY_MISMATCH: 422,
    RefusalReason.INVALID_INPUT: 422,
    CANCELLED: 409,
    BAD_REQUEST: 400,
    TOO_LARGE: 413,
    TURN_FAILED: 500,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    WEBSOCKETS_DISABLED: 426,
    UNAUTHORIZED: 401,
    UNAUTHENTICATED: 401,
    TOO_MANY_REFUSALS: 429,
}


class ApiError(Exception):
    """An answer other than a turn's outcome: a reason, a message, and so a status."""

    def __init__(self, reason: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.headers = headers  # besides the reason's hints (a Retry-After of its own)

    @classmethod
    def refused(cls, refusal: Refusal) -> "ApiError":
        return cls(refusal.reason.value, refusal.message)


# Hints for generic clients (PROTOCOL section 6.6): wait and retry, or do not retry at all.
RETRY_LATER = {"Retry-After": str(RETRY_AFTER_SECONDS)}
NEVER_RETRY = {"X-Should-Retry": "false"}
HINTS: dict[str, dict[str, str]] = {
    RefusalReason.IN_FLIGHT: RETRY_LATER,
    UNAVAILABLE: RETRY_LATER,
    RefusalReason.STALE_TOKEN: NEVER_RETRY,
    RefusalReason.CLOSED: NEVER_RETRY,
    RefusalReason.IDEMPOTENCY_MISMATCH: NEVER_RETRY,
    UNAUTHORIZED: {"WWW-Authenticate": "Bearer"},  # RFC 6750: say which scheme is wanted
    UNAUTHENTICATED: {"WWW-Authenticate": 'Bearer realm="baton"'},
}


_ENCODER = msgspec.json.Encoder()


def error_body(reason: str, message: str) -> bytes:
    """Every error's JSON body, encoded: the one shape whether Litestar sends it
    (error_response) or a middleware answers on its own, with no Response to build
    (api/refusal_limit.py's 429 to a blocked client)."""
    return _ENCODER.encode(ErrorBody(error=message, reason=reason))


def error_response(
    request: AnyRequest,
    reason: str,
    message: str,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    Metrics.of(request.app).count_error(reason)
    return Response(
        error_body(reason, message),
        status_code=status or STATUS_BY_REASON[reason],
        media_type=MediaType.JSON,
        headers={**HINTS.get(reason, {}), **(headers or {})},
    )


def _api_error(request: AnyRequest, error: ApiError) -> Response[bytes]:
    return error_response(request, error.reason, error.message, headers=error.headers)


def _invalid_body(error: ValidationException) -> str:
    problems = error.extra if isinstance(error.extra, list) else []
    if problems and all(problem.get("source") == "body" for problem in problems):
        return "request body must be a JSON object"
    return error.detail


def _http_error(request: AnyRequest, error: HTTPException) -> Response[bytes]:
    """Litestar's own answers (body limits, unparsable JSON, no such route) in our shape."""
    if isinstance(error, RequestEntityTooLarge):
        return error_response(request, TOO_LARGE, "request body is too large")
    if isinstance(error, ValidationException):
        return error_response(request, BAD_REQUEST, _invalid_body(error))
    if isinstance(error.__cause__, SerializationException):  # Litestar could not decode it
        return error_response(request, BAD_REQUEST, f"request body is not JSON: {error.detail}")
    if error.status_code == HTTPStatus.BAD_REQUEST:
        return error_response(request, BAD_REQUEST, error.detail)
    reason = HTTPStatus(error.status_code).phrase.lower().replace(" ", "-")
    response = error_response(request, reason, error.detail, status=error.status_code)
    # Litestar's own answers carry headers a client needs: a 405's Allow (RFC 9110).
    response.headers.update(error.headers or {})
    return response


def _unavailable(request: AnyRequest, error: StoreUnavailable) -> Response[bytes]:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, error)
    return error_response(request, UNAVAILABLE, UNAVAILABLE_MESSAGE)


def _internal(request: AnyRequest, error: Exception) -> Response[bytes]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(request, INTERNAL, "internal error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    StoreUnavailable: _unavailable,
    HTTPException: _http_error,
    Exception: _internal,
}
