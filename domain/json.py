"""The JSON values that cross the protocol: turn input, records, outputs, handler state."""

import math
from typing import TypeAlias

JsonValue: TypeAlias = "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"
JsonObject: TypeAlias = dict[str, JsonValue]

_SCALARS = (str, int, float, bool, type(None))


def is_json(value: object) -> bool:
    """True if `value` is made only of JSON types, so it can be stored and sent as it is.

    A handler is application code: it can hand back a datetime or a set by mistake, and
    that must fail its turn before anything commits rather than when the row is written.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return False  # NaN and Infinity are not JSON; PostgreSQL's JSONB refuses them
        elif not isinstance(item, _SCALARS):
            return False
    return True
