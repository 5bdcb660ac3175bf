"""Times as SQLite holds them must be laid out exactly as SQLAlchemy lays them out: rows the
store writes with plain sqlite3 are read back through SQLAlchemy, and the other way round,
and times are compared as text in SQL (a lease's end, a seal's expiry)."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import DateTime

from baton.infra.sqlite_values import parse_time, time_text

_DIALECT = sqlite.dialect()
_SQLALCHEMY = DateTime().dialect_impl(_DIALECT).bind_processor(_DIALECT)
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets)
)
def test_a_time_is_written_as_sqlalchemy_writes_its_utc_value(at: datetime) -> None:
    assert _SQLALCHEMY is not None
    utc = at.astimezone(UTC).replace(tzinfo=None)
    assert time_text(at) == _SQLALCHEMY(utc)
    assert parse_time(time_text(at)) == at


def test_whole_seconds_and_early_years_keep_their_width() -> None:
    # strftime wrote year 999 as "999-...", which sorted after "2026-..." as text.
    assert time_text(datetime(2026, 12, 2, 11, 0, tzinfo=UTC)) == "2026-12-02 11:00:00.000000"
    assert time_text(datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "0999-01-02 03:04:05.000006"
