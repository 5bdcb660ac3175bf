"""The OpenAPI schema, less what Litestar cannot know.

- The turn endpoints read their body themselves (one parser for every transport,
  api/turn_input.py), so the body they take is published here, from the input type the
  handler declares (domain.handler.takes), with what any input must be to be stored.
- Parameters are declared `str | None` where the endpoints check them by the protocol's
  rules, in the protocol's order; their real form is published here, so that a request the
  schema calls valid is one the server takes (tests/e2e/test_openapi_fuzz.py holds it to that).
- The links: the reply of a turn names the session and the token that authorise the next
  request (PROTOCOL sections 4 to 6).
"""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    Link,
    OpenAPI,
    OpenAPIMediaType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)

from api.sessions import MAX_SEQ
from domain.handler import TurnHandler, input_type_of
from domain.json import INT_RANGE
from domain.requests import KEY_LENGTH, START_KEY_MIN
from infra.history import MAX_PAGE

START = "/v1/session"
CONTINUE = "/v1/session/{session_id}/message"
TURN_PATHS = (START, CONTINUE)
TOKEN_HEADER = "X-Continuation-Token"
KEY_HEADER = "Idempotency-Key"

NO_NUL = "^[^\\u0000]*$"  # PostgreSQL stores no NUL character (domain.json.input_problem)
# Any JSON value both databases store as it came: no NUL in a string or a key, no integer
# beyond 64 bits (NaN and Infinity are not JSON, so no schema allows them anyway).
STORABLE = "StorableJson"
STORABLE_JSON: dict[str, Any] = {
    "description": "any JSON value without a NUL character in a string or a key, and "
    "without an integer beyond 64 bits",
    "anyOf": [
        {"type": ["null", "boolean", "number"], "not": {"type": "integer"}},
        {"type": "integer", "minimum": INT_RANGE.start, "maximum": INT_RANGE.stop - 1},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"$ref": f"#/components/schemas/{STORABLE}"}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": f"#/components/schemas/{STORABLE}"},
        },
    ],
}
ABSENT = "null or empty counts as absent"
PROTOCOL_FIELDS = {
    START: {
        "continuationToken": {
            "type": ["string", "null"],
            "maxLength": 0,
            "description": f"none on a start: a token is refused 400 unexpected-token ({ABSENT})",
        },
        "sessionId": {
            "type": ["string", "null"],
            "maxLength": 0,
            "description": f"none on a start: the server mints the id ({ABSENT})",
        },
    },
    CONTINUE: {
        "continuationToken": {
            "type": ["string", "null"],
            "pattern": NO_NUL,
            "description": f"the current token, if not in {TOKEN_HEADER} (the body wins)",
        }
    },
}

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

# What the reply of a turn authorises next: every call on its session, with its token.
FOLLOWING = {
    "Continue": ("post", CONTINUE, "the next turn"),
    "Read": ("get", "/v1/session/{session_id}", "read the session"),
    "Events": ("get", "/v1/session/{session_id}/events", "read or follow its events"),
    "Cancel": ("post", "/v1/session/{session_id}/cancel", "stop its running turn"),
    "Close": ("delete", "/v1/session/{session_id}", "close the session"),
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _operations(schema: OpenAPI) -> Iterator[tuple[str, str, Operation]]:
    for path, item in (schema.paths or {}).items():
        for method in METHODS:
            operation = getattr(item, method, None)
            if operation is not None:
                yield path, method, operation


def _input_schema(path: str, handler: TurnHandler, components: dict[str, Any]) -> dict[str, Any]:
    declared = input_type_of(handler)
    described: dict[str, Any] = {
        "type": "object",
        "description": "the turn's input, as the handler takes it; the protocol's fields "
        "are removed before the handler sees it",
        "properties": PROTOCOL_FIELDS[path],
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": f"#/components/schemas/{STORABLE}"},
    }
    components[STORABLE] = STORABLE_JSON
    if declared is None:
        return described
    (reference,), found = msgspec.json.schema_components(
        [declared], ref_template="#/components/schemas/{name}"
    )
    components.update(found)
    return {"allOf": [reference, described]}


def _publish_bodies(schema: OpenAPI, handler: TurnHandler, components: dict[str, Any]) -> None:
    for path in TURN_PATHS:
        item = schema.paths.get(path) if schema.paths else None
        if item is None or item.post is None:
            continue
        # A plain JSON schema where Litestar expects its Schema: serialised as it is.
        input_schema = cast(Schema, _input_schema(path, handler, components))
        item.post.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=input_schema)}, required=True
        )


def _without_null(schema: Schema | Reference | None) -> Schema | Reference | None:
    """A header or a query string has no null: an optional parameter is one that may be
    absent, which `required: false` says already."""
    if isinstance(schema, Schema) and schema.one_of:
        kept = [choice for choice in schema.one_of if getattr(choice, "type", None) != "null"]
        if len(kept) == 1:
            choice = kept[0]
            if isinstance(choice, Reference):
                return choice
            return replace(choice, description=schema.description)
    return schema


def _publish_parameters(schema: OpenAPI) -> None:
    for path, _, operation in _operations(schema):
        for parameter in operation.parameters or []:
            if not isinstance(parameter, Parameter):
                continue
            parameter.schema = _without_null(parameter.schema)
            rules = PARAMETERS.get((parameter.param_in, parameter.name), {})
            rule = rules.get(path, rules.get("*"))
            if rule is None:
                continue
            parameter.schema = cast(Schema, dict(rule["schema"]))
            parameter.description = rule["description"]
            parameter.required = rule.get("required", False)


def _publish_links(schema: OpenAPI) -> None:
    ids = {
        (method, path): operation.operation_id for path, method, operation in _operations(schema)
    }
    links = {
        name: Link(
            operation_id=ids[(method, path)],
            description=f"{what}, with the session and the token this reply carries",
            parameters={
                "path.session_id": "$response.body#/sessionId",
                f"header.{TOKEN_HEADER}": "$response.body#/continuationToken",
            },
        )
        for name, (method, path, what) in FOLLOWING.items()
        if (method, path) in ids
    }
    for path in TURN_PATHS:
        item = schema.paths.get(path) if schema.paths else None
        replied = (
            item.post.responses.get("200") if item and item.post and item.post.responses else None
        )
        if replied is not None and not isinstance(replied, Reference):
            replied.links = dict(links)


def publish_turn_input(app: Litestar, handler: TurnHandler) -> None:
    """Publish what Litestar cannot know (see the module's doc): the body of the turn
    endpoints as the handler's input (PROTOCOL section 4), the parameters' real form, and
    the links from a turn's reply to what its token authorises."""
    schema = app.openapi_schema
    components: dict[str, Any] = {}
    _publish_bodies(schema, handler, components)
    _publish_parameters(schema)
    _publish_links(schema)
    if components and schema.components is not None:
        existing = schema.components.schemas or {}
        schema.components.schemas = {**existing, **components}
