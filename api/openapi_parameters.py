"""The real form of the parameters the endpoints declare loosely (`str | None`, checked by
the protocol's rules in the protocol's order), by where they go and by path: what
api/openapi.py publishes, so that a request the schema calls valid is one the server takes."""

from typing import Any

from baton.api.sessions import MAX_SEQ
from baton.domain.requests import KEY_LENGTH, START_KEY_MIN
from baton.infra.history import MAX_PAGE

START = "/v1/session"
CONTINUE = "/v1/session/{session_id}/message"
TOKEN_HEADER = "X-Continuation-Token"
KEY_HEADER = "Idempotency-Key"

VISIBLE_ASCII = "[!-~]"


def digits_up_to(limit: int) -> str:
    """A regular expression for the decimal numbers from 0 to `limit` written in at most as
    many digits as `limit` (leading zeros allowed): what api/sessions.py takes as a seq."""
    written = str(limit)
    width = len(written)

    def any_digits(count: int) -> str:
        return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"

    shorter = [f"[0-9]{{1,{width - 1}}}"] if width > 1 else []
    below = [  # the same leading digits, then a smaller one, then any
        written[:at]
        + ("0" if digit == "1" else f"[0-{int(digit) - 1}]")
        + any_digits(width - at - 1)
        for at, digit in enumerate(written)
        if digit != "0"
    ]
    return "|".join([*shorter, *below, written])


# An empty seq is an absent one (as for every query parameter that is text). Each pattern
# comes with an example: a generic client fills a parameter from its examples, or from any
# value of the same name it has seen, which an example makes it check against the pattern.
SEQ = {"type": "string", "pattern": f"^(?:{digits_up_to(MAX_SEQ)})?$", "examples": ["3"]}
KEY_EXAMPLE = "5f0c7a1e-3b9d-4c2a-8e6f-1a2b3c4d5e6f"
UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# (in, name) -> the parameter's schema and description where they are more than Litestar
# knows; a path to a dict: the operations of that path differ.
TOKEN = {
    "schema": {"type": "string", "minLength": 1},
    "description": "the current token (a read also takes the token the last turn consumed, "
    "within the recovery window: its outcome then carries the token it issued)",
    "required": True,
}
PARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    ("header", TOKEN_HEADER): {
        START: {
            "schema": {"type": "string", "maxLength": 0},
            "description": "none on a start: a token is refused 400 unexpected-token "
            "(empty counts as absent)",
        },
        CONTINUE: {
            "schema": {"type": "string"},
            "description": "the current token, if not in the body's `continuationToken` (the "
            "body wins); one of the two is needed (400 missing-token)",
        },
        "*": TOKEN,
    },
    ("header", KEY_HEADER): {
        START: {
            "schema": {
                "type": "string",
                "pattern": f"^{VISIBLE_ASCII}{{{START_KEY_MIN},{KEY_LENGTH.stop - 1}}}$",
                "examples": [KEY_EXAMPLE],
            },
            "description": f"{START_KEY_MIN} to {KEY_LENGTH.stop - 1} visible ASCII "
            "characters, the only secret that recovers the first token: a retry with the "
            "same key and input gets the committed start's reply again",
        },
        CONTINUE: {
            "schema": {
                "type": "string",
                "pattern": f"^{VISIBLE_ASCII}{{{KEY_LENGTH.start},{KEY_LENGTH.stop - 1}}}$",
                "examples": [KEY_EXAMPLE],
            },
            "description": f"{KEY_LENGTH.start} to {KEY_LENGTH.stop - 1} visible ASCII "
            "characters: a retry with the same key, token and input gets the committed "
            "turn's reply again",
        },
    },
    ("header", "Last-Event-ID"): {
        "*": {
            "schema": SEQ,
            "description": "the seq an EventSource resumes after; wins over `after`",
        }
    },
    ("query", "after"): {
        "/v1/session/{session_id}/events": {
            "schema": SEQ,
            "description": "a seq: only the events after it (absent or empty: all)",
        },
        "/v1/admin/sessions": {
            "schema": {
                "type": "string",
                "pattern": f"^(?:{UUID})?$",
                "examples": ["0192f5c4-7b1e-7c3a-9d2f-5e8a1b4c6d70"],
            },
            "description": "the `next` of the previous page, a session id (absent or "
            "empty: from the start)",
        },
        "/v1/admin/sessions/{session_id}/events": {
            "schema": {"type": "string", "pattern": "^(?:[0-9]{1,18})?$", "examples": ["42"]},
            "description": "the `next` of the previous page, an event position (absent or "
            "empty: from the first)",
        },
        "/v1/admin/events": {
            "schema": {"type": "string"},
            "description": "the `next` of the previous page, as this server handed it "
            "out (its form is the backend's; any other is 400); absent or empty: from the "
            "start",
        },
    },
    ("query", "limit"): {
        # A session's history: a page is as long as it may be unless asked otherwise.
        "/v1/admin/sessions/{session_id}/events": {
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": MAX_PAGE},
            "description": f"page size, 1 to {MAX_PAGE}",
        },
        "*": {
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
            "description": f"page size, 1 to {MAX_PAGE}",
        },
    },
}
