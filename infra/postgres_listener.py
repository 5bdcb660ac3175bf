"""LISTEN on PostgreSQL for writes and cancel requests made by other replicas.

One connection of its own per process (LISTEN is session-scoped, so it cannot be a pooled
one): `baton_events` wakes the followers of a session here; `baton_cancel` tells the turn
this replica runs for a session to stop. Notifications are hints: if the connection drops,
the listener reconnects with a growing pause, and meanwhile the waiters' polling carries
on, slower (infra/notifier.py).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from baton.infra.notifier import Notifier
from baton.infra.postgres_pool import OUTAGES
from baton.infra.postgres_sql import CANCEL_CHANNEL, EVENTS_CHANNEL

log = logging.getLogger("baton.listener")
MAX_PAUSE = 10.0


class PostgresListener:
    def __init__(
        self, dsn: str, notifier: Notifier, on_cancel: Callable[[str], object] | None = None
    ) -> None:
        self._dsn = dsn
        self._notifier = notifier
        self.on_cancel = on_cancel
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        pause = 0.1
        while True:
            try:
                conn = await asyncpg.connect(self._dsn)
            except (*OUTAGES, asyncpg.PostgresError) as error:
                log.info("listener: cannot connect (%s); retrying in %.1f s", error, pause)
                await asyncio.sleep(pause)
                pause = min(MAX_PAUSE, pause * 2)
                continue
            pause = 0.1
            try:
                await self._serve(conn)
            except (*OUTAGES, asyncpg.PostgresError) as error:
                log.info("listener: connection lost (%s); reconnecting", error)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)

    async def _serve(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(EVENTS_CHANNEL, self._on_event)
        await conn.add_listener(CANCEL_CHANNEL, self._on_cancel)
        self.connected.set()
        await lost.wait()

    def _on_event(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._notifier.wake(payload)

    def _on_cancel(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._notifier.wake(payload)
        if self.on_cancel is not None:
            self.on_cancel(payload)
