"""The database clock's offset (infra/db_clock.py), measured against scripted clocks."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from baton.infra.db_clock import DatabaseClock

T0 = datetime(2026, 12, 2, tzinfo=UTC)


def ms(value: float) -> timedelta:
    return timedelta(milliseconds=value)


def scripted(round_trips: list[float], skew: timedelta) -> DatabaseClock:
    """A clock whose reads take `round_trips` (ms) each, the database answering at each
    read's midpoint with its clock `skew` ahead of the local one."""
    local_times: list[datetime] = []
    database_times: list[datetime] = []
    at = T0
    for trip in round_trips:
        local_times += [at, at + ms(trip)]
        database_times.append(at + ms(trip) / 2 + skew)
        at += ms(trip) + ms(5)
    local: Iterator[datetime] = iter(local_times)
    database: Iterator[datetime] = iter(database_times)

    async def read() -> datetime:
        return next(database)

    return DatabaseClock(read, local=lambda: next(local))


async def test_a_real_skew_is_measured_and_applied() -> None:
    clock = scripted([4, 2, 6], timedelta(seconds=60))
    await clock.sync()
    assert clock.offset == timedelta(seconds=60)


async def test_the_shortest_round_trip_decides() -> None:
    # The database answered late in the slow reads (a skew of 30 ms looks like 0 to 50 ms
    # there); the fast read bounds it to 1 ms either way.
    local_times = [T0, T0 + ms(100), T0 + ms(200), T0 + ms(202), T0 + ms(300), T0 + ms(400)]
    database_times = [T0 + ms(130), T0 + ms(231), T0 + ms(390)]
    local, database = iter(local_times), iter(database_times)

    async def read() -> datetime:
        return next(database)

    clock = DatabaseClock(read, local=lambda: next(local))
    await clock.sync()
    assert clock.offset == ms(30)


async def test_an_offset_inside_the_round_trip_is_taken_as_none() -> None:
    # Same machine: whatever the noise says, no read can tell 2 ms from 0 across 10 ms.
    clock = scripted([10, 12, 11], ms(-2))
    await clock.sync()
    assert clock.offset == timedelta(0)


async def test_without_a_database_time_the_local_clock_stands() -> None:
    clock = DatabaseClock(None, local=lambda: T0)
    await clock.sync()
    assert clock() == T0
