"""The database's clock, read without asking the database each time.

Leases are deadlines every replica compares (domain.events.Lease): a replica whose own
clock runs ahead would see a live turn's lease as lapsed and take the turn over; one that
runs behind would write leases that others see lapse early. So on PostgreSQL deadlines are
computed and compared on the database's time: the local clock, corrected by its offset from
the database's, measured at start and every so often (a round trip of its own, off the hot
path; the correction is good to half a round trip). SQLite is one machine's file: its
local clock is the database's.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger("baton.clock")
RESYNC_SECONDS = 30.0
SAMPLES = 3  # reads per sync; the first may pay for preparing the statement


def utc_now() -> datetime:
    return datetime.now(UTC)


class DatabaseClock:
    def __init__(
        self,
        read_database_time: Callable[[], Awaitable[datetime]] | None = None,
        local: Callable[[], datetime] = utc_now,
    ) -> None:
        self._read = read_database_time
        self._local = local
        self.offset = timedelta(0)
        self._task: asyncio.Task[None] | None = None

    def __call__(self) -> datetime:
        """The database's time now, as well as this process knows it."""
        return self._local() + self.offset

    async def sync(self) -> None:
        """Measure the offset again, NTP-style: of a few reads, the one with the shortest
        round trip bounds the database's time best, against the local midpoint. An offset
        within that bound cannot be told from none (one machine, or well-synced ones), and
        is taken as none, so measurement noise never moves this clock back and forth."""
        if self._read is None:
            return
        best: tuple[timedelta, timedelta] | None = None  # (round trip, offset)
        for _ in range(SAMPLES):
            before = self._local()
            database = await self._read()
            after = self._local()
            sample = (after - before, database - (before + (after - before) / 2))
            if best is None or sample[0] < best[0]:
                best = sample
        assert best is not None  # noqa: S101 - SAMPLES > 0
        round_trip, offset = best
        self.offset = offset if abs(offset) > round_trip / 2 else timedelta(0)

    def start(self) -> None:
        if self._read is not None:
            self._task = asyncio.get_running_loop().create_task(self._keep_in_sync())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep_in_sync(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as error:  # the database is down: keep the last offset
                log.info("database clock: %s; keeping the last offset", error)
            await asyncio.sleep(RESYNC_SECONDS)
