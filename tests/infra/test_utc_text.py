"""utc_text writes times with msgspec instead of isoformat; these pin it to isoformat's
output, digit for digit, since the chain hashes it and SQLite compares it as text."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from baton.infra.utc_text import utc_isoformat, utc_micro

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
zones = st.one_of(st.just(UTC), offsets)
# Whole seconds are the one case msgspec writes differently: drawn half the time.
times = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones)
whole = times.map(lambda at: at.replace(microsecond=0))


@given(st.one_of(times, whole))
def test_utc_micro_is_isoformat_of_the_utc_time(at: datetime) -> None:
    expected = at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    assert utc_micro(at) == expected
    assert len(utc_micro(at)) == 26


@given(st.one_of(times, whole))
def test_utc_isoformat_is_isoformat(at: datetime) -> None:
    assert utc_isoformat(at) == at.isoformat()


def test_the_edges_keep_their_width() -> None:
    assert utc_micro(datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000001"
    assert utc_micro(datetime(2026, 12, 4, tzinfo=UTC)) == "2026-12-04T00:00:00.000000"
    assert utc_isoformat(datetime(2026, 12, 4, tzinfo=UTC)) == "2026-12-04T00:00:00+00:00"
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert utc_micro(last) == "9999-12-31T23:59:59.999999"
