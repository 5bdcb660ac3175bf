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
    PathItem,
    Reference,
    RequestBody,
    Schema,
)

from baton.api.openapi_parameters import CONTINUE, PARAMETERS, START, TOKEN_HEADER
from baton.domain.handler import TurnHandler, input_type_of
from baton.domain.json import INT_RANGE

TURN_PATHS = (START, CONTINUE)

NO_NUL = "^[^\\u0000]*$"  # PostgreSQL stores no NUL character (domain.json.json_problem)
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

# What the reply of a turn authorises next: every call on its session, with its token.
FOLLOWING = {
    "Continue": ("post", CONTINUE, "the next turn"),
    "Read": ("get", "/v1/session/{session_id}", "read the session"),
    "Events": ("get", "/v1/session/{session_id}/events", "read or follow its events"),
    "Cancel": ("post", "/v1/session/{session_id}/cancel", "stop its running turn"),
    "Close": ("delete", "/v1/session/{session_id}", "close the session"),
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


CANONICAL = "/v1"  # the tables above name the paths as mounted at /v1


def _canonical(prefix: str, path: str) -> str:
    """A path of the schema, as the tables above name it (the API may be mounted elsewhere)."""
    return CANONICAL + path.removeprefix(prefix) if path.startswith(f"{prefix}/") else path


def _operations(schema: OpenAPI, prefix: str) -> Iterator[tuple[str, str, Operation]]:
    """Each operation, by its canonical path."""
    for path, item in (schema.paths or {}).items():
        for method in METHODS:
            operation = getattr(item, method, None)
            if operation is not None:
                yield _canonical(prefix, path), method, operation


def _item(schema: OpenAPI, prefix: str, path: str) -> PathItem | None:
    """The schema's item of a canonical path."""
    return schema.paths.get(prefix + path.removeprefix(CANONICAL)) if schema.paths else None


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


def _publish_bodies(
    schema: OpenAPI, prefix: str, handler: TurnHandler, components: dict[str, Any]
) -> None:
    for path in TURN_PATHS:
        item = _item(schema, prefix, path)
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


def _publish_parameters(schema: OpenAPI, prefix: str) -> None:
    for path, _, operation in _operations(schema, prefix):
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


def _publish_links(schema: OpenAPI, prefix: str) -> None:
    ids = {
        (method, path): operation.operation_id
        for path, method, operation in _operations(schema, prefix)
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
        item = _item(schema, prefix, path)
        replied = (
            item.post.responses.get("200") if item and item.post and item.post.responses else None
        )
        if replied is not None and not isinstance(replied, Reference):
            replied.links = dict(links)


def publish_turn_input(app: Litestar, handler: TurnHandler, prefix: str = CANONICAL) -> None:
    """Publish what Litestar cannot know (see the module's doc): the body of the turn
    endpoints as the handler's input (PROTOCOL section 4), the parameters' real form, and
    the links from a turn's reply to what its token authorises."""
    schema = app.openapi_schema
    components: dict[str, Any] = {}
    _publish_bodies(schema, prefix, handler, components)
    _publish_parameters(schema, prefix)
    _publish_links(schema, prefix)
    if components and schema.components is not None:
        existing = schema.components.schemas or {}
        schema.components.schemas = {**existing, **components}
