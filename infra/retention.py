"""Retention: removing closed sessions, events and projection rows together."""

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.state import SessionStatus
from infra.database import writing
from infra.tables import events, followers, recovery, sessions, side_chains

BATCH = 500  # sessions removed per transaction


async def closed_before(engine: AsyncEngine, before: datetime) -> list[str]:
    """Sessions closed, and last changed, before `before`. A closed session never changes
    again, so this list stays true while it is exported and removed."""
    query = (
        select(sessions.c.session_id)
        .where(sessions.c.status == SessionStatus.CLOSED.value, sessions.c.updated_at < before)
        .order_by(sessions.c.session_id)
    )
    async with engine.connect() as conn:
        return [str(value) for value in (await conn.execute(query)).scalars()]


async def remove_sessions(engine: AsyncEngine, session_ids: list[str]) -> int:
    """Delete the sessions' events, projection and side rows (and any recovery seal left);
    returns how many events went."""
    removed = 0
    for start in range(0, len(session_ids), BATCH):
        chunk = session_ids[start : start + BATCH]
        async with writing(engine).begin() as conn:
            gone = await conn.execute(delete(events).where(events.c.session_id.in_(chunk)))
            for table in (sessions, side_chains, recovery, followers):
                await conn.execute(delete(table).where(table.c.session_id.in_(chunk)))
            removed += gone.rowcount
    return removed
