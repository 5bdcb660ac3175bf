"""The `sessions` projection (and its `side_chains` heads) rebuilt from the events alone, to
prove it is derivable."""

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Column, MetaData, Select, Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from infra.chain import Folded, by_session, fold_session, in_chain_order
from infra.database import writing
from infra.tables import events, sessions, sessions_with_side_chains, side_chains

BATCH = 500  # rows read, and projection rows written, per round trip


async def folded_sessions(
    conn: AsyncConnection, on_event: Callable[[], None] | None = None
) -> AsyncIterator[Folded]:
    """Every session's projection, folded from its events, one session at a time.

    Streams the table, so memory stays flat however many events there are; `on_event` is
    called once per event read (for a progress bar).
    """
    async for rows in by_session(conn, in_chain_order(select(events)), BATCH):
        if on_event is not None:
            for _ in rows:
                on_event()
        folded = fold_session(rows)
        if folded is not None:
            yield folded


async def count_session_events(engine: AsyncEngine) -> int:
    """How many events a rebuild reads (for a progress bar's total)."""
    query = select(func.count()).select_from(events).where(events.c.session_id.is_not(None))
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def rebuild_sessions(engine: AsyncEngine, on_event: Callable[[], None] | None = None) -> int:
    """Replace every projection row with the one its events fold into, in one transaction
    (readers see the old projection until it commits); returns the count."""
    async with writing(engine).begin() as conn:
        await conn.execute(delete(sessions))
        await conn.execute(delete(side_chains))
        return await _fold_into(conn, on_event, sessions, side_chains)


async def _fold_into(
    conn: AsyncConnection,
    on_event: Callable[[], None] | None,
    table: Table,
    side_table: Table | None = None,
) -> int:
    """Write each folded session to `table`, and its side chain's heads to `side_table`
    (without one, into `table`'s own columns, as the stored rows join them)."""
    count = 0
    batch: list[dict[str, Any]] = []
    side_batch: list[dict[str, Any]] = []
    async for folded in folded_sessions(conn, on_event):
        side = folded.side_row()
        if side_table is None:
            batch.append({**folded.row(), "refusals": None, "refusal_head": None, **(side or {})})
        else:
            batch.append(folded.row())
            if side is not None:
                side_batch.append(side)
        if len(batch) == BATCH:
            count += await _write(conn, table, batch)
            if side_table is not None:
                await _write(conn, side_table, side_batch)
    if side_table is not None:
        await _write(conn, side_table, side_batch)
    return count + await _write(conn, table, batch)


async def _write(conn: AsyncConnection, table: Table, batch: list[dict[str, Any]]) -> int:
    if batch:
        await conn.execute(insert(table), batch)
    written = len(batch)
    batch.clear()
    return written


async def check_sessions(
    engine: AsyncEngine, on_event: Callable[[], None] | None = None
) -> list[str]:
    """Rebuild into a scratch table and compare: the sessions whose stored projection row
    (joined with its side chain's heads) differs from the rebuilt one (or exists on one side
    only). Changes nothing else."""
    # The joined columns and types, without the constraints (whose names are taken).
    scratch = Table(
        f"sessions_check_{secrets.token_hex(4)}",
        MetaData(),
        *(Column(column.name, column.type) for column in sessions.columns),
        *(Column(column.name, column.type) for column in side_chains.columns[1:]),
    )
    async with writing(engine).begin() as conn:
        await conn.run_sync(scratch.create)
    try:
        async with writing(engine).begin() as conn:
            await _fold_into(conn, on_event, scratch)
        return await _differences(engine, scratch)
    finally:
        async with writing(engine).begin() as conn:
            await conn.run_sync(scratch.drop)


async def _differences(engine: AsyncEngine, scratch: Table) -> list[str]:
    """Merge the two tables in session order, comparing decoded rows."""
    differing: list[str] = []
    stored = _rows(engine, sessions_with_side_chains().order_by(sessions.c.session_id))
    rebuilt = _rows(engine, select(scratch).order_by(scratch.c.session_id))
    left, right = await anext(stored, None), await anext(rebuilt, None)
    while left is not None or right is not None:
        left_id = str(left["session_id"]) if left is not None else None
        right_id = str(right["session_id"]) if right is not None else None
        if right_id is None or (left_id is not None and left_id < right_id):
            differing.append(str(left_id))
            left = await anext(stored, None)
        elif left_id is None or right_id < left_id:
            differing.append(right_id)
            right = await anext(rebuilt, None)
        else:
            if left != right:
                differing.append(left_id)
            left, right = await anext(stored, None), await anext(rebuilt, None)
    return differing


async def _rows(engine: AsyncEngine, query: Select[Any]) -> AsyncIterator[dict[str, Any]]:
    async with engine.connect() as conn:
        async for row in await conn.stream(query.execution_options(yield_per=BATCH)):
            yield dict(row._mapping)
