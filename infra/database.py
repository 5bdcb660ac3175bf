"""Engine set-up per backend: SQLite for zero set-up, PostgreSQL for production."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from baton.infra.settings import Settings, SettingsError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_DRIVERS = {SQLITE: "aiosqlite", POSTGRESQL: "asyncpg"}


def normalize_url(raw: str) -> URL:
    """The URL with Baton's async driver, or a SettingsError that says what is supported."""
    try:
        url = make_url(raw)
    except Exception as error:
        raise SettingsError(f"database URL {raw!r} cannot be parsed: {error}") from None
    backend = POSTGRESQL if url.get_backend_name() in {"postgresql", "postgres"} else None
    backend = SQLITE if url.get_backend_name() == SQLITE else backend
    if backend is None:
        raise SettingsError(
            f"database URL {url.render_as_string(hide_password=True)!r}: "
            "Baton supports sqlite+aiosqlite:///PATH and postgresql+asyncpg://..."
        )
    if backend == SQLITE and url.database in {None, "", ":memory:"}:
        raise SettingsError("SQLite needs a file: every connection must see the same database")
    return url.set(drivername=f"{backend}+{_DRIVERS[backend]}")


def create_engine(settings: Settings, *, direct: bool = False) -> AsyncEngine:
    """The engine on the database URL, or with `direct` on the direct URL (migrations:
    never through a transaction pooler)."""
    url = normalize_url(settings.direct_url if direct else settings.database_url)
    if url.get_backend_name() == SQLITE:
        return _sqlite_engine(url, settings)
    if settings.behind_pooler and not direct:
        return _pooled_engine(url)
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
    )


def _pooled_engine(url: URL) -> AsyncEngine:
    """An engine through a transaction pooler (PgBouncer 1.18), where consecutive
    transactions of one connection may run on different server sessions. The dialect
    prepares every statement by name; with no statement cache it prepares and runs each in
    the same transaction (so on the same server session), and a name of its own keeps two
    clients that share a server session from colliding. No pool of ours: the pooler is it."""
    return create_async_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "statement_cache_size": 0,  # asyncpg's own cache: named statements
            "prepared_statement_cache_size": 0,  # the dialect's
            "prepared_statement_name_func": _statement_name,
        },
    )


def _statement_name() -> str:
    return f"__baton_{uuid.uuid4().hex}__"


def _sqlite_engine(url: URL, settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        url, connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below instead of the driver's own
        # implicit BEGIN, which starts deferred and lets two writers read the same version.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={settings.sqlite_busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        # A writing transaction takes the write lock up front: a deferred one that read first
        # would fail to upgrade its lock when another writer got there in between. Readers
        # stay deferred, so they never wait for writers (WAL) nor hold writers up.
        writes = connection.get_execution_options().get(_WRITES, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


_WRITES = "baton_writes"


def writing(engine: AsyncEngine) -> AsyncEngine:
    """The engine for transactions that write: on SQLite they take the lock at BEGIN."""
    return engine.execution_options(**{_WRITES: True})


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction whose statements all see one snapshot of a live database
    (PostgreSQL: REPEATABLE READ; SQLite: a deferred transaction in WAL mode reads one
    snapshot from its first read on), and that locks nothing."""
    async with engine.connect() as conn:
        if conn.dialect.name == POSTGRESQL:
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


STEP_ASIDE = 0.02  # seconds, at least, an operator's batch loop leaves SQLite's lock free


@asynccontextmanager
async def batch(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One batch of an operator's long run (prune, replay): a writing transaction, and on
    SQLite a pause after it as long as it held the lock (STEP_ASIDE at least). SQLite has
    one writer, and a writer kept waiting polls (its busy handler sleeps and tries again):
    a loop that took the lock straight back would starve the server's writer for the whole
    run, though every batch is short. PostgreSQL locks rows, not the database: no pause."""
    started = time.monotonic()
    async with writing(engine).begin() as conn:
        yield conn
    if engine.dialect.name == SQLITE:
        await asyncio.sleep(max(time.monotonic() - started, STEP_ASIDE))


def backend_of(engine: AsyncEngine) -> str:
    return engine.dialect.name


def is_sqlite(raw_url: str) -> bool:
    """Whether a database URL names SQLite (a SettingsError if it names nothing supported)."""
    return normalize_url(raw_url).get_backend_name() == SQLITE
