"""Opening a database as the server and the CLI use it: its session store and its reader,
on one pool (PostgreSQL) or one writer and one reader connection (SQLite)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from domain.ports import SessionStore
from infra.database import SQLITE, normalize_url
from infra.history import SessionReader
from infra.postgres_pool import PostgresPool
from infra.postgres_reader import PostgresReader
from infra.postgres_store import PostgresSessionStore
from infra.settings import Settings
from infra.sqlite_reader import SqliteReader
from infra.sqlite_store import SqliteSessionStore


@dataclass(frozen=True, slots=True)
class Database:
    store: SessionStore
    reader: SessionReader


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The store and reader for `settings.database_url`, closed when the block ends. The
    schema must be at head (infra.migrate.upgrade_to_head) before the store is used."""
    url = normalize_url(settings.database_url)
    if url.get_backend_name() == SQLITE:
        async with _sqlite(str(url.database), settings) as database:
            yield database
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool = await PostgresPool(dsn, size=settings.db_pool_size).open()
    try:
        yield Database(PostgresSessionStore(pool), PostgresReader(pool))
    finally:
        await pool.dispose()


@asynccontextmanager
async def _sqlite(path: str, settings: Settings) -> AsyncIterator[Database]:
    timeout = settings.sqlite_busy_timeout_ms
    store = SqliteSessionStore(
        path, synchronous=settings.sqlite_synchronous, busy_timeout_ms=timeout
    )
    await store.open()
    reader = SqliteReader(path, busy_timeout_ms=timeout)
    try:
        yield Database(store, reader)
    finally:
        await reader.dispose()
        await store.dispose()


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SessionStore]:
    """Only the store (tests and benchmarks that write and read nothing else)."""
    async with open_database(settings) as database:
        yield database.store
