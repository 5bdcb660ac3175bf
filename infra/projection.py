"""The `sessions` projection rebuilt from the events alone, to prove it is derivable."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.state import SessionState, evolve
from infra.chain import ChainHeads
from infra.codec import row_to_session_event, state_to_row
from infra.tables import events, sessions

BATCH = 500  # rows read, and projection rows written, per round trip


@dataclass(frozen=True, slots=True)
class Folded:
    """A session's projection as its events make it: the domain state and the chain heads."""

    state: SessionState
    heads: ChainHeads

    def row(self) -> dict[str, Any]:
        return {**state_to_row(self.state), **self.heads.as_row()}


def _in_chain_order() -> Any:
    """Every event that belongs to a session: its session events by seq, then its refusals."""
    return (
        select(events)
        .where(events.c.session_id.is_not(None))
        .order_by(events.c.session_id, events.c.seq.is_(None), events.c.seq, events.c.refusal_seq)
    )


async def folded_sessions(conn: AsyncConnection) -> AsyncIterator[Folded]:
    """Every session's projection, folded from its events, one session at a time.

    Streams the table, so memory stays flat however many events there are.
    """
    session_id: Any = None
    state: SessionState | None = None
    heads = ChainHeads()
    async for row in await conn.stream(_in_chain_order().execution_options(yield_per=BATCH)):
        event = row._mapping
        if event["session_id"] != session_id:
            if state is not None:
                yield Folded(state, heads)
            session_id, state, heads = event["session_id"], None, ChainHeads()
        if event["seq"] is not None:
            state = evolve(state, row_to_session_event(event))
            heads = replace(heads, head_hash=event["hash"])
        else:
            heads = replace(heads, refusals=heads.refusals + 1, refusal_head=event["hash"])
    if state is not None:
        yield Folded(state, heads)


async def rebuild_sessions(engine: AsyncEngine) -> int:
    """Replace every projection row with the one its events fold into; returns the count."""
    count = 0
    async with engine.begin() as conn:
        await conn.execute(delete(sessions))
        batch: list[dict[str, Any]] = []
        async for folded in folded_sessions(conn):
            batch.append(folded.row())
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
