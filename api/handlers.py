"""Finding the application's turn handler from a `module:attribute` reference."""

import importlib

from domain.handler import TurnHandler


class HandlerNotFound(ValueError):
    """The --handler reference does not name an async callable; the message says why."""


# Short names for the handlers that ship with Baton.
BUILT_IN = {"demo": "api.demo:demo_handler", "bench": "api.demo:instant_handler"}


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
