"""One exception class per reason the server gives (PROTOCOL sections 3, 4 and 6), under
`BatonError`, which carries the `reason`, the HTTP `status_code` and the server's `message`.

An error that arrives inside a stream (an SSE `error` event) has no status line of its own;
it carries the status its reason has as a buffered answer (turn-failed: 500, cancelled: 409).
A failure of the network that outlasted every retry is `Unavailable` with `status_code` None.
"""

import contextlib
from typing import Any, ClassVar

import httpx


class BatonError(Exception):
    """Anything the server refused or failed, or that the client could not get through."""

    REASON: ClassVar[str] = "error"
    STATUS: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.REASON
        self.status_code = status_code if status_code is not None else self.STATUS
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = f" {self.status_code}" if self.status_code is not None else ""
        return f"{self.reason}{status}: {self.message}"


class UnknownSession(BatonError):
    REASON = "unknown-session"
    STATUS = 404


class MissingToken(BatonError):
    REASON = "missing-token"
    STATUS = 400


class StaleToken(BatonError):
    """The token is not the session's current one, and no lost reply explains it."""

    REASON = "stale-token"
    STATUS = 409


class InFlight(BatonError):
    """A turn held the session's claim for longer than the client was willing to wait."""

    REASON = "in-flight"
    STATUS = 409


class Closed(BatonError):
    REASON = "closed"
    STATUS = 410


class UnexpectedToken(BatonError):
    REASON = "unexpected-token"
    STATUS = 400


class IdempotencyMismatch(BatonError):
    REASON = "idempotency-mismatch"
    STATUS = 422


class InvalidInput(BatonError):
    REASON = "invalid-input"
    STATUS = 422


class BadRequest(BatonError):
    REASON = "bad-request"
    STATUS = 400


class TooLarge(BatonError):
    REASON = "too-large"
    STATUS = 413


class TurnFailed(BatonError):
    """The handler raised or timed out: nothing committed, the token stays valid."""

    REASON = "turn-failed"
    STATUS = 500


class Cancelled(BatonError):
    """The turn was cancelled (POST .../cancel): nothing committed, the token stays valid."""

    REASON = "cancelled"
    STATUS = 409


class Unavailable(BatonError):
    """503 (or the network) for longer than the retry policy allows."""

    REASON = "unavailable"
    STATUS = 503


class InternalError(BatonError):
    REASON = "internal-error"
    STATUS = 500


class NoSession(BatonError):
    """Client-side: there is no session to resume (an empty token store, a closed session)."""

    REASON = "no-session"


ERRORS: dict[str, type[BatonError]] = {
    cls.REASON: cls
    for cls in (
        UnknownSession,
        MissingToken,
        StaleToken,
        InFlight,
        Closed,
        UnexpectedToken,
        IdempotencyMismatch,
        InvalidInput,
        BadRequest,
        TooLarge,
        TurnFailed,
        Cancelled,
        Unavailable,
        InternalError,
    )
}


def error_for(
    reason: str,
    message: str,
    status_code: int | None = None,
    retry_after: float | None = None,
) -> BatonError:
    """The exception for `reason` (a BatonError naming the reason if it is a new one)."""
    cls = ERRORS.get(reason)
    if cls is None:
        return BatonError(message, status_code=status_code, reason=reason, retry_after=retry_after)
    return cls(message, status_code=status_code, retry_after=retry_after)


def retry_after_of(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (delta-seconds only; an HTTP date is ignored)."""
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> BatonError:
    """The exception an error answer stands for, from its `{"error", "reason"}` body (or, from
    something else on the way, e.g. a proxy's HTML 502, from its status alone)."""
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    status = response.status_code
    if isinstance(body, dict) and isinstance(body.get("reason"), str):
        message = str(body.get("error", ""))
        return error_for(body["reason"], message, status, retry_after_of(response))
    text = response.text[:200]
    reason = "unavailable" if status in (502, 503, 504) else f"http-{status}"
    return error_for(reason, text or response.reason_phrase, status, retry_after_of(response))
