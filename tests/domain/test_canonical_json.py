"""The canonical JSON every stored digest was taken over: however it is produced, it must
be the text `json.dumps` with these options has always written."""

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.domain.json import canonical_encoder

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def reference(value: object, *, allow_nan: bool) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
    )


@pytest.mark.parametrize("allow_nan", [False, True])
@given(value=json_values)
def test_the_text_is_json_dumps_with_the_canonical_options(value: object, allow_nan: bool) -> None:
    assert canonical_encoder(allow_nan=allow_nan)(value) == reference(value, allow_nan=allow_nan)


def test_nan_is_refused_or_written_as_json_dumps_does() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_encoder(allow_nan=False)({"x": math.nan})
    assert canonical_encoder(allow_nan=True)([math.nan, -math.inf]) == "[NaN,-Infinity]"


def test_what_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        canonical_encoder(allow_nan=False)({"at": datetime.now(UTC)})


def test_one_encoder_serves_call_after_call() -> None:
    encode = canonical_encoder(allow_nan=False)
    assert [encode({"b": [1, {"d": 2, "c": "é"}], "a": None}) for _ in range(3)] == [
        '{"a":null,"b":[1,{"c":"é","d":2}]}'
    ] * 3
