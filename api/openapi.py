"""The OpenAPI schema, less what Litestar cannot know: the turn endpoints read their body
themselves (one parser for every transport, api/turn_input.py), so the body they take is
published here, from the input type the handler declares (domain.handler.takes)."""

from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, RequestBody, Schema

from domain.handler import TurnHandler, input_type_of

TURN_PATHS = ("/v1/session", "/v1/session/{session_id}/message")
PROTOCOL_FIELDS = {
    "continuationToken": {
        "type": ["string", "null"],
        "description": "the current token, if not in X-Continuation-Token (the body wins)",
    }
}


def _input_schema(handler: TurnHandler, components: dict[str, Any]) -> dict[str, Any]:
    declared = input_type_of(handler)
    described: dict[str, Any] = {
        "type": "object",
        "description": "the turn's input, as the handler takes it; the protocol's fields "
        "are removed before the handler sees it",
        "properties": PROTOCOL_FIELDS,
    }
    if declared is None:
        return described
    (reference,), found = msgspec.json.schema_components(
        [declared], ref_template="#/components/schemas/{name}"
    )
    components.update(found)
    return {"allOf": [reference, described]}


def publish_turn_input(app: Litestar, handler: TurnHandler) -> None:
    """Document the body of the turn endpoints as the handler's input (PROTOCOL section 4)."""
    schema = app.openapi_schema
    components: dict[str, Any] = {}
    # A plain JSON schema where Litestar expects its Schema: serialised as it is.
    input_schema = cast(Schema, _input_schema(handler, components))
    body = RequestBody(
        content={"application/json": OpenAPIMediaType(schema=input_schema)}, required=True
    )
    for path in TURN_PATHS:
        item = schema.paths.get(path) if schema.paths else None
        if item is not None and item.post is not None:
            item.post.request_body = body
    if components and schema.components is not None:
        existing = schema.components.schemas or {}
        schema.components.schemas = {**existing, **components}
