"""Opening a database as the server and the CLI use it: its session store and its reader,
on one pool (PostgreSQL) or one writer and one reader connection (SQLite), and the
in-process notifier that wakes whoever waits on a session."""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import field
from datetime import datetime

from sqlalchemy.engine import URL

from baton.domain.identifiers import SessionId
from baton.domain.ports import SessionStore, StoreUnavailable
from baton.domain.values import value
from baton.infra.database import SQLITE, normalize_url
from baton.infra.db_clock import DatabaseClock
from baton.infra.history import SessionReader
from baton.infra.notifier import Notifier
from baton.infra.postgres_listener import PostgresListener
from baton.infra.postgres_pool import PostgresPool
from baton.infra.postgres_reader import PostgresReader
from baton.infra.postgres_store import PostgresSessionStore
from baton.infra.settings import Settings
from baton.infra.sqlite_reader import SqliteReader
from baton.infra.sqlite_store import SqliteSessionStore

SpendRefusal = Callable[[str, datetime, datetime], Awaitable[tuple[int, datetime]]]


async def _nothing_to_sweep(now: datetime) -> None:
    """A store without seals (none so far)."""


async def _nobody_to_wake(session_id: SessionId, until: datetime) -> None:
    """SQLite: other processes cannot be woken; their followers poll."""


@value
class Database:
    store: SessionStore
    reader: SessionReader
    notifier: Notifier = field(default_factory=Notifier)
    # Erase seals whose recovery window has passed (and stale followers).
    sweep: Callable[[datetime], Awaitable[None]] = field(default=_nothing_to_sweep)
    # Have other replicas' writes to a session wake this process until a time.
    follow: Callable[[SessionId, datetime], Awaitable[None]] = _nobody_to_wake
    listener: PostgresListener | None = None
    # How often a follower looks at the store when nothing woke it: PostgreSQL wakes
    # followers across replicas, SQLite's other processes cannot.
    poll_seconds: float = 0.25
    # The time leases are computed and compared in (infra/db_clock.py).
    clock: DatabaseClock = field(default_factory=DatabaseClock)
    # Count one more refusal of a client, shared by every replica (api/refusal_limit.py):
    # (client, now, the window's end if a new one starts) -> (count, the window's end).
    spend_refusal: SpendRefusal | None = None
    # The pool's connections checked out now (PostgreSQL; SQLite keeps no pool).
    connections_in_use: Callable[[], int] | None = None

    def on_cancel(self, stop_turn: Callable[[str], object]) -> None:
        """Where a cancel request made on another replica arrives (PostgreSQL only; on
        SQLite a running turn finds the request when it asks the store)."""
        if self.listener is not None:
            self.listener.on_cancel = stop_turn


@asynccontextmanager
async def open_database(settings: Settings, *, listen: bool = False) -> AsyncIterator[Database]:
    """The store and reader for `settings.database_url`, closed when the block ends; with
    `listen`, also the PostgreSQL listener (a server; not a CLI command). The schema must
    be at head (infra.migrate.upgrade_to_head) before the store is used."""
    url = normalize_url(settings.database_url)
    if url.get_backend_name() == SQLITE:
        async with _sqlite(str(url.database), settings) as database:
            yield database
        return
    notifier = Notifier()
    pool = PostgresPool(_dsn(url), size=settings.db_pool_size, pooled=settings.behind_pooler)
    await pool.open()
    store = PostgresSessionStore(pool, notifier, lanes=settings.db_write_lanes)
    # LISTEN is session-scoped: its connection is the direct URL's, never a pooler's.
    direct = _dsn(normalize_url(settings.direct_url))
    listener = PostgresListener(direct, notifier) if listen else None
    clock = DatabaseClock(store.database_time)
    if listener is not None:  # a server: keep its clock on the database's
        listener.start()
        with contextlib.suppress(StoreUnavailable):
            await clock.sync()  # a database still down comes up later; so does the offset
        clock.start()
    try:
        yield Database(
            store,
            PostgresReader(pool),
            notifier,
            store.sweep,
            store.follow,
            listener,
            1.0,
            clock,
            store.spend_refusal,
            pool.connections_in_use,
        )
    finally:
        await clock.stop()
        if listener is not None:
            await listener.stop()
        await pool.dispose()


def _dsn(url: URL) -> str:
    """asyncpg's form of a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def _sqlite(path: str, settings: Settings) -> AsyncIterator[Database]:
    timeout, notifier = settings.sqlite_busy_timeout_ms, Notifier()
    store = SqliteSessionStore(
        path, synchronous=settings.sqlite_synchronous, busy_timeout_ms=timeout, notifier=notifier
    )
    await store.open()
    reader = SqliteReader(path, busy_timeout_ms=timeout)
    try:
        yield Database(store, reader, notifier, store.sweep, spend_refusal=store.spend_refusal)
    finally:
        await reader.dispose()
        await store.dispose()


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SessionStore]:
    """Only the store (tests and benchmarks that write and read nothing else)."""
    async with open_database(settings) as database:
        yield database.store
