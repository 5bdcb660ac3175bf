"""The one rule for JSON values that cross the protocol (domain.json.json_problem): a turn's
input and a handler's output, wait, state and records are held to it alike, so a value one
database stores the other stores too, and no value, however made, stalls the walk."""

import json
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.domain.json import INT_RANGE, MAX_DEPTH, canonical_encoder, json_problem


def nested(depth: int, inner: object = 1) -> object:
    value = inner
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@contextmanager
def at_most(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: the walk must end however its value is made."""

    def too_long(signum: int, frame: object) -> None:
        raise TimeoutError(f"the walk took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


STORABLE = [
    None,
    True,
    0,
    INT_RANGE.start,
    INT_RANGE.stop - 1,
    -0.0,
    1e308,
    "",
    "plain",
    "é, 漢字 and 😀 (outside the BMP)",
    "\u2028 and \ufeff",
    [],
    {},
    {"": [None, {"é": "x"}]},
    nested(MAX_DEPTH),
]

NOT_STORABLE = [
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param({"a\x00": 1}, "NUL", id="nul-in-key"),
    pytest.param(["\ud800"], "lone surrogate", id="surrogate"),
    pytest.param({"\udfff": 1}, "lone surrogate", id="surrogate-in-key"),
    pytest.param(INT_RANGE.stop, "beyond 64 bits", id="int-too-big"),
    pytest.param([INT_RANGE.start - 1], "beyond 64 bits", id="int-too-small"),
    pytest.param(10**5000, "beyond 64 bits", id="int-past-str-limit"),
    pytest.param({"x": math.nan}, "NaN", id="nan"),
    pytest.param([-math.inf], "NaN and Infinity", id="infinity"),
    pytest.param(nested(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}", id="too-deep"),
    pytest.param({1: "x"}, "key is not a string", id="int-key"),
    pytest.param({None: "x"}, "key is not a string", id="none-key"),
    pytest.param(("a", "tuple"), "tuple is not a JSON value", id="tuple"),
    pytest.param({"tags": {"a"}}, "set is not a JSON value", id="set"),
    pytest.param([b"bytes"], "bytes is not a JSON value", id="bytes"),
    pytest.param({"at": datetime(2025, 1, 1, tzinfo=UTC)}, "datetime", id="datetime"),
]


@pytest.mark.parametrize("value", STORABLE, ids=repr)
def test_a_storable_value_has_no_problem_and_encodes(value: object) -> None:
    assert json_problem(value) is None
    text = canonical_encoder(allow_nan=False)(value)
    assert json.loads(text) == value


@pytest.mark.parametrize(("value", "complaint"), NOT_STORABLE)
def test_a_value_no_database_could_store_is_named(value: object, complaint: str) -> None:
    problem = json_problem(value)
    assert problem is not None
    assert complaint in problem


def cycles() -> Iterator[tuple[str, object]]:
    own_list: list[object] = []
    own_list.append(own_list)
    yield "a list in itself", own_list
    own_dict: dict[str, object] = {}
    own_dict["me"] = own_dict
    yield "a dict in itself", own_dict
    wide: list[object] = []
    wide.extend([wide] * 1000)  # a breadth-first walk would visit 1000**64 items
    yield "a wide cycle", wide
    late: dict[str, object] = {"fine": [1, 2, {"x": "y"}]}
    late["later"] = [{"back": late}]
    yield "a cycle under storable values", late


@pytest.mark.parametrize(("name", "value"), list(cycles()), ids=[name for name, _ in cycles()])
def test_a_value_that_contains_itself_is_refused_not_walked_forever(
    name: str, value: object
) -> None:
    with at_most(5):
        problem = json_problem(value)
    assert problem == f"nested deeper than {MAX_DEPTH} levels"


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=6)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=3), children, max_size=3)
    ),
    max_leaves=12,
)


@given(value=values)
def test_what_passes_is_exactly_what_both_databases_store_as_it_came(value: object) -> None:
    """PostgreSQL's JSONB takes no NUL, UTF-8 no lone surrogate, JSON no NaN or Infinity, and
    msgspec and both databases 64-bit integers exactly: the rule is those and no more."""
    storable = all(_stored_as_it_came(leaf) for leaf in _leaves(value))
    assert (json_problem(value) is None) == storable


def _stored_as_it_came(leaf: object) -> bool:
    if isinstance(leaf, str):
        return "\x00" not in leaf and leaf.encode("utf-8", "replace").decode() == leaf
    if isinstance(leaf, float):
        return math.isfinite(leaf)
    if isinstance(leaf, int) and not isinstance(leaf, bool):
        return leaf in INT_RANGE
    return True


def _leaves(value: object) -> Iterator[object]:
    """Every key and scalar of a value made by the strategy (no cycles, shallow)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
