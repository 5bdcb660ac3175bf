"""An Idempotency-Key's shape (domain/requests.py), character by character."""

import pytest

from baton.domain.requests import InvalidKey, idempotency_key

PADDING = "k" * 21  # with one more character, long enough for a start


@pytest.mark.parametrize("starting", [False, True])
def test_a_key_is_made_of_visible_ascii_and_nothing_else(starting: bool) -> None:
    """Every code point of the Basic Multilingual Plane's first block and beyond: only "!"
    to "~" are accepted (no space, no control characters, no DEL, nothing non-ASCII)."""
    accepted = []
    for code in [*range(0x300), 0x2028, 0xD800, 0xFEFF, 0x1F600]:
        key = PADDING + chr(code)
        try:
            idempotency_key(key, starting=starting)
        except InvalidKey:
            continue
        accepted.append(code)
    assert accepted == list(range(ord("!"), ord("~") + 1))


def test_a_key_is_1_to_255_characters() -> None:
    assert idempotency_key("k", starting=False) == "k"
    assert idempotency_key("~" * 255, starting=False) == "~" * 255
    for length in (0, 256):
        with pytest.raises(InvalidKey):
            idempotency_key("k" * length, starting=False)
