"""The JSON values that cross the protocol: turn input, records, outputs, handler state."""

import json
import math
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TypeAlias

JsonValue: TypeAlias = "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"
JsonObject: TypeAlias = dict[str, JsonValue]


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


# What a JSON value crossing the protocol may hold (a turn's input, else PROTOCOL section
# 3's bad-request; a handler's output, wait, state or record, else its turn fails), the
# same on every transport and every database: a value either backend can store as it
# came, and every layer can walk without recursion limits.
MAX_DEPTH = 64
INT_RANGE = range(-(2**63), 2**63)  # what both databases' JSON and msgspec take exactly


def json_problem(value: object) -> str | None:
    """Why `value` cannot be stored and sent as it is, or None: the one rule for every JSON
    value that crosses the protocol, a turn's input and a handler's output, wait, state and
    records alike, so what one database stores the other does too.

    Only JSON types (objects with string keys, arrays, strings, finite numbers, booleans,
    null): a handler is application code, and a datetime or a set handed back by mistake
    must fail its turn before anything commits rather than when the row is written. NUL and
    lone surrogates in strings are refused (PostgreSQL cannot store the one, UTF-8 cannot
    encode the other), as are NaN and Infinity, integers beyond 64 bits, and nesting deeper
    than MAX_DEPTH; a value that contains itself is nested without end, so it is refused
    too, and the walk ends after at most MAX_DEPTH levels whatever it is handed."""
    if not isinstance(value, dict | list):
        return _scalar_problem(value)
    stack: list[tuple[dict[object, object] | list[object], int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(container, dict):
            for key in container:
                problem = _string_problem(key) if isinstance(key, str) else _KEY_PROBLEM
                if problem:
                    return problem
            children: Iterable[object] = container.values()
        else:
            children = container
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            else:
                problem = _scalar_problem(child)
                if problem:
                    return problem
    return None


_KEY_PROBLEM = "an object key is not a string"


def _scalar_problem(item: object) -> str | None:
    if isinstance(item, str):
        return _string_problem(item)
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, int):
        return None if item in INT_RANGE else "an integer beyond 64 bits"
    if isinstance(item, float):
        return None if math.isfinite(item) else "NaN and Infinity are not JSON numbers"
    return f"a {type(item).__name__} is not a JSON value"


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a string holds a NUL character (\\u0000)"
    if text.isascii():  # O(1) in CPython: ASCII text holds no surrogate
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds a lone surrogate (not Unicode text)"
    return None
