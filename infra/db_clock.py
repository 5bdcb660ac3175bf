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
        """Measure the offset again: the database's time against the local midpoint."""
        if self._read is None:
            return
        before = self._local()
        database = await self._read()
        after = self._local()
        self.offset = database - (before + (after - before) / 2)

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
