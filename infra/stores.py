"""Opening the session store a database URL calls for."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from domain.ports import SessionStore
from infra.database import SQLITE, normalize_url
from infra.postgres_store import PostgresSessionStore
from infra.settings import Settings
from infra.sqlite_store import SqliteSessionStore


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SessionStore]:
    """The store for `settings.database_url`, closed when the block ends. The schema must be
    at head (infra.migrate.upgrade_to_head)."""
    url = normalize_url(settings.database_url)
    store: SqliteSessionStore | PostgresSessionStore
    if url.get_backend_name() == SQLITE:
        store = SqliteSessionStore(
            str(url.database),
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
    else:
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        store = PostgresSessionStore(dsn, pool_size=settings.db_pool_size)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
