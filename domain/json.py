"""The JSON values that cross the protocol: turn input, records, outputs, handler state."""

import json
import math
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TypeAlias

JsonValue: TypeAlias = "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"
JsonObject: TypeAlias = dict[str, JsonValue]

_SCALARS = (str, int, float, bool, type(None))


def canonical_encoder(*, allow_nan: bool) -> Callable[[object], str]:
    """The JSON text that digests are taken over (the chain's links, input fingerprints):
    keys sorted, no spaces, text as it is (not \\u-escaped). Stored digests were computed
    over exactly this text, so it never changes. Each user builds its encoder once:
    json.dumps with options builds a new one per call.

    JSONEncoder.encode still builds the stdlib's C encoder anew on every call; the same C
    encoder with the same options, built here once, writes the same text in about 70% of
    the time. Built without a circular-reference check (markers None): these values come
    from JSON or are checked as JSON, so they hold no cycle."""
    options = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
    )
    if c_make_encoder is None:  # a Python built without the _json accelerator
        return options.encode
    chunks = c_make_encoder(
        None, options.default, encode_basestring, None, ":", ",", True, False, allow_nan
    )

    def encode(value: object) -> str:
        return "".join(chunks(value, 0))

    return encode


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


# What a turn's input may hold (PROTOCOL section 3's bad-request, the same on every
# transport and every database): a value either backend can store as it came, and every
# layer can walk without recursion limits.
MAX_DEPTH = 64
INT_RANGE = range(-(2**63), 2**63)  # what both databases' JSON and msgspec take exactly


def input_problem(value: object) -> str | None:
    """Why `value` cannot be a turn's input, or None. NUL and lone surrogates in strings are
    refused everywhere (PostgreSQL cannot store the one, UTF-8 cannot encode the other),
    as are NaN and Infinity (not JSON), integers beyond 64 bits, and nesting deeper than
    MAX_DEPTH."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                return problem
        elif isinstance(item, float) and not math.isfinite(item):
            return "NaN and Infinity are not JSON numbers"
        elif isinstance(item, int) and not isinstance(item, bool) and item not in INT_RANGE:
            return "an integer beyond 64 bits"
    return None


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a string holds a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds a lone surrogate (not Unicode text)"
    return None
