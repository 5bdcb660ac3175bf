"""The `sessions` projection rebuilt from the events alone, to prove it is derivable."""

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.state import SessionState, evolve
from infra.codec import row_to_session_event, state_to_row
from infra.tables import events, sessions

BATCH = 500  # projection rows written per INSERT while rebuilding


async def folded_sessions(conn: AsyncConnection) -> AsyncIterator[SessionState]:
    """Every session's state, folded from its events in seq order, one session at a time.

    Streams the table, so memory stays flat however many events there are.
    """
    query = (
        select(events)
        .where(events.c.seq.is_not(None))  # refusals never change a session
        .order_by(events.c.session_id, events.c.seq)
    )
    state: SessionState | None = None
    async for row in await conn.stream(query.execution_options(yield_per=BATCH)):
        event = row_to_session_event(row._mapping)
        if state is not None and state.session_id != event.session_id:
            yield state
            state = None
        state = evolve(state, event)
    if state is not None:
        yield state


async def rebuild_sessions(engine: AsyncEngine) -> int:
    """Replace every projection row with the one its events fold into; returns the count."""
    count = 0
    async with engine.begin() as conn:
        await conn.execute(delete(sessions))
        batch: list[dict[str, Any]] = []
        async for state in folded_sessions(conn):
            batch.append(state_to_row(state))
            if len(batch) == BATCH:
                count += await _write(conn, batch)
        count += await _write(conn, batch)
    return count


async def _write(conn: AsyncConnection, batch: list[dict[str, Any]]) -> int:
    if batch:
        await conn.execute(insert(sessions), batch)
    written = len(batch)
    batch.clear()
    return written
