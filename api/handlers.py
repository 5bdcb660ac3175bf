"""Finding the application's turn handler from a `module:attribute` reference."""

import importlib
from typing import Any

import msgspec

from baton.domain.handler import InputCheck, TurnHandler, input_type_of
from baton.domain.json import JsonObject


class HandlerNotFound(ValueError):
    """The --handler reference does not name an async callable; the message says why."""


# Short names for the handlers that ship with Baton.
BUILT_IN = {
    "demo": "baton.api.demo:demo_handler",
    "bench": "baton.api.demo:instant_handler",
    "approval": "baton.api.approval:approval_handler",
}


def load_handler(reference: str) -> TurnHandler:
    """The handler named `package.module:attribute`, or one of BUILT_IN by its short name."""
    reference = BUILT_IN.get(reference, reference)
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise HandlerNotFound(f"handler {reference!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        message = f"handler {reference!r}: cannot import {module_name}: {error}"
        raise HandlerNotFound(message) from error
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise HandlerNotFound(f"handler {reference!r}: {module_name} has no callable {attribute}")
    return handler  # type: ignore[no-any-return]


def input_check(handler: TurnHandler) -> InputCheck | None:
    """The check of a turn's input against the type the handler declares (domain.handler.
    takes), with msgspec: the message says what does not match, as a client can read it."""
    declared = input_type_of(handler)
    if declared is None:
        return None

    def check(input: JsonObject) -> str | None:
        try:
            msgspec.convert(input, type=declared)
        except msgspec.ValidationError as error:
            return f"the input does not match what this handler takes: {error}"
        return None

    return check


def input_schema(handler: TurnHandler) -> dict[str, Any]:
    """The JSON schema of the input the handler takes (any object, if it declares none)."""
    declared = input_type_of(handler)
    if declared is None:
        return {"type": "object", "description": "the turn's input, as the handler takes it"}
    schema: dict[str, Any] = msgspec.json.schema(declared)
    return schema
