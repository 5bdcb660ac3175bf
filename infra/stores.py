"""Opening the session store a database URL calls for."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from domain.ports import SessionStore
from infra.database import create_engine
from infra.settings import Settings
from infra.store import SqlSessionStore


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SessionStore]:
    """The store for `settings.database_url`, closed when the block ends. The schema must be
    at head (infra.migrate.upgrade_to_head)."""
    engine = create_engine(settings)
    try:
        yield SqlSessionStore(engine)
    finally:
        await engine.dispose()
