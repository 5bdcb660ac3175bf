"""The refusal taxonomy of PROTOCOL section 3: a refusal is a value with a reason."""

from enum import StrEnum

from baton.domain.values import value

# How much of a client-supplied session id a refusal repeats or stores (PROTOCOL section 3).
PRESENTED_ID_LIMIT = 200


class RefusalReason(StrEnum):
    UNKNOWN_SESSION = "unknown-session"
    MISSING_TOKEN = "missing-token"
    STALE_TOKEN = "stale-token"
    IN_FLIGHT = "in-flight"
    CLOSED = "closed"
    UNEXPECTED_TOKEN = "unexpected-token"
    IDEMPOTENCY_MISMATCH = "idempotency-mismatch"  # PROTOCOL section 6.4
    INVALID_INPUT = "invalid-input"  # PROTOCOL section 4, v1.1


@value
class Refusal:
    reason: RefusalReason
    message: str


def unknown_session(presented_id: str) -> Refusal:
    shown = presented_id[:PRESENTED_ID_LIMIT]
    return Refusal(RefusalReason.UNKNOWN_SESSION, f"unknown session '{shown}'")


MISSING_TOKEN = Refusal(RefusalReason.MISSING_TOKEN, "missing continuationToken")
STALE_TOKEN = Refusal(RefusalReason.STALE_TOKEN, "stale or invalid continuationToken")
IN_FLIGHT = Refusal(RefusalReason.IN_FLIGHT, "a turn is already in flight for this session")
UNEXPECTED_TOKEN = Refusal(
    RefusalReason.UNEXPECTED_TOKEN, "present no continuationToken to start a session"
)
# PROTOCOL section 1 refuses a client-chosen session id on start with the same reason; the
# message names what was actually presented so the client can see its mistake.
UNEXPECTED_SESSION_ID = Refusal(
    RefusalReason.UNEXPECTED_TOKEN, "present no sessionId to start a session"
)


def closed(session_id: str) -> Refusal:
    return Refusal(RefusalReason.CLOSED, f"session '{session_id}' is closed")


IDEMPOTENCY_MISMATCH = Refusal(
    RefusalReason.IDEMPOTENCY_MISMATCH,
    "this Idempotency-Key was used with another input; use a new key for a new turn",
)
# A keyed start retried after its session went on to later turns: the first token it would
# recover is spent, and a second session is never started for one key (PROTOCOL 6.4).
KEY_SPENT = Refusal(
    RefusalReason.STALE_TOKEN, "the session this Idempotency-Key started has moved on"
)


def invalid_input(message: str) -> Refusal:
    return Refusal(RefusalReason.INVALID_INPUT, message)
