"""The chain's text of a time is part of every stored hash: a faster way of writing it must
write exactly what the chain has always hashed (strftime's fixed-width form)."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from baton.infra.chain import time_text

CHAIN_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    st.datetimes(
        min_value=datetime(1001, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
    )
)
def test_a_time_is_written_as_the_chain_has_always_hashed_it(at: datetime) -> None:
    assert time_text(at) == at.astimezone(UTC).strftime(CHAIN_FORMAT)


def test_whole_seconds_keep_their_microseconds() -> None:
    at = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert time_text(at) == "2026-12-02T11:00:00.000000Z"
