"""Reading a real server's database from a test: what the store holds, as the auditor sees it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.database import create_engine
from baton.infra.settings import Settings
from baton.infra.tables import events, sessions


@asynccontextmanager
async def probe(database: str | Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a database URL, or as `Settings` set it up (through a pooler, say)."""
    settings = Settings(database_url=database) if isinstance(database, str) else database
    engine = create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def session_events(engine: AsyncEngine, session_id: str) -> list[dict[str, Any]]:
    query = select(events).where(events.c.session_id == session_id).order_by(events.c.position)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def wait_for_status(engine: AsyncEngine, session_id: str, status: str) -> None:
    query = select(sessions.c.status).where(sessions.c.session_id == session_id)
    for _ in range(3000):
        async with engine.connect() as conn:
            if (await conn.execute(query)).scalar() == status:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"session {session_id} never became {status}")
