"""The `sessions` projection (and its `side_chains` heads) rebuilt from the events alone, to
prove it is derivable and to mend it, on a live database.

A rebuild once replaced every row in one transaction: its DELETE held every projection row
on PostgreSQL (and SQLite's write lock) until the end, so every turn of every session
waited for the whole run. Now it goes a batch of sessions at a time, in session id order
(each batch a fresh keyset query: nothing stays open between batches), and each batch is
one short transaction that

1. locks the batch's projection rows (PostgreSQL: FOR UPDATE; SQLite: BEGIN IMMEDIATE).
   Every write to a session's events takes its row first, in the transaction that adds
   the events (a turn's UPDATE, a refusal's KEY SHARE, infra/postgres_sql.py), so once the
   locks are held the batch's events are complete and stay so until the commit: a write
   that was under way has committed and is read; one that comes later waits for this batch
   alone, then applies its change to the rebuilt row;
2. reads the batch's events and folds them (infra/chain.py), and compares each session's
   row with the stored one;
3. rewrites the rows that differ, and only those, in place (and removes rows no events
   explain).

Why lock, rather than read without locks and write back only rows still unchanged? A
session that moved meanwhile would then have to be retried, or left to its live writer;
but a live writer computes the next row from the stored one (the fast paths add one to
`version` and chain onto `head_hash`), so a wrong row stays wrong under it, and a retry can
lose the race again on a busy session. A lock on one batch costs a turn on those sessions a
few milliseconds, once, and leaves nothing to retry.

Sessions whose ids sort after the largest at the start are not visited: they began after
the run did, and their live writers wrote them whole. `--check` reads each batch in one
snapshot (PostgreSQL REPEATABLE READ, SQLite's read transaction) and locks nothing, so a
session that changes meanwhile is never reported as differing.
"""

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from itertools import groupby
from typing import Any

from sqlalchemy import Column, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton.domain.values import value
from baton.infra.chain import Folded, fold_session, in_chain_order
from baton.infra.database import batch, snapshot
from baton.infra.tables import (
    SESSION_FIELDS,
    events,
    sessions,
    sessions_with_side_chains,
    side_chains,
)

BATCH = 200  # sessions per transaction
Progress = Callable[[], None] | None


@value
class Rebuilt:
    sessions: int  # sessions folded from their events
    rewritten: int  # projection rows that differed, rewritten (or removed)


async def count_session_events(engine: AsyncEngine) -> int:
    """How many events a rebuild reads (for a progress bar's total)."""
    query = select(func.count()).select_from(events).where(events.c.session_id.is_not(None))
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def rebuild_sessions(engine: AsyncEngine, on_event: Progress = None) -> Rebuilt:
    """Make every projection row the one its events fold into, a locked batch at a time."""
    folded_count = rewritten = 0
    async for ids in session_batches(engine):
        async with batch(engine) as conn:
            lock = select(sessions.c.session_id).where(sessions.c.session_id.in_(ids))
            await conn.execute(lock.order_by(sessions.c.session_id).with_for_update())
            stored, folded = await _read_batch(conn, ids, on_event)
            differing = _differing(ids, stored, folded)
            await _rewrite(conn, differing, stored, folded)
        folded_count, rewritten = folded_count + len(folded), rewritten + len(differing)
    return Rebuilt(folded_count, rewritten)


async def check_sessions(engine: AsyncEngine, on_event: Progress = None) -> list[str]:
    """The sessions whose stored projection row (joined with its side chain's heads)
    differs from the one their events fold into, or exists on one side only. Changes
    nothing, locks nothing."""
    differing: list[str] = []
    async for ids in session_batches(engine):
        async with snapshot(engine) as conn:
            stored, folded = await _read_batch(conn, ids, on_event)
        differing += _differing(ids, stored, folded)
    return differing


async def session_batches(engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """The ids of every session the events or the projection know, in order, BATCH at a
    time, up to the largest there was at the start."""
    size, last = BATCH, await _largest(engine)
    after: str | None = None
    while last is not None:
        ids = [found for found in await _next_ids(engine, after, size) if found <= last]
        if not ids:
            return
        yield ids
        after = ids[-1]


def _id_columns() -> tuple[Column[Any], ...]:
    return (events.c.session_id, sessions.c.session_id)


async def _largest(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        found = [
            # Not NULL: PostgreSQL sorts NULLs first when descending, and a refusal that
            # names no session has none.
            await conn.scalar(
                select(column).where(column.is_not(None)).order_by(column.desc()).limit(1)
            )
            for column in _id_columns()
        ]
    present = [str(value) for value in found if value is not None]
    return max(present) if present else None


async def _next_ids(engine: AsyncEngine, after: str | None, size: int) -> list[str]:
    """The `size` smallest ids after `after` of either table (each table's `size` smallest
    hold them)."""
    found: set[str] = set()
    async with engine.connect() as conn:
        for column in _id_columns():
            query = select(column).distinct().where(column.is_not(None))
            if after is not None:
                query = query.where(column > after)
            query = query.order_by(column).limit(size)
            found.update(str(value) for value in (await conn.execute(query)).scalars())
    return sorted(found)[:size]


async def _read_batch(
    conn: AsyncConnection, ids: Sequence[str], on_event: Progress
) -> tuple[dict[str, dict[str, Any]], dict[str, Folded]]:
    """The batch's stored rows, and the projections its events fold into."""
    query = sessions_with_side_chains().where(sessions.c.session_id.in_(ids))
    stored = {str(row["session_id"]): _stored(row) for row in await _mappings(conn, query)}
    query = in_chain_order(select(events)).where(events.c.session_id.in_(ids))
    rows = await _mappings(conn, query)
    if on_event is not None:
        for _ in rows:
            on_event()
    folded: dict[str, Folded] = {}
    for session_id, group in groupby(rows, key=lambda row: str(row["session_id"])):
        session = fold_session(group)
        if session is not None:
            folded[session_id] = session
    return stored, folded


async def _mappings(conn: AsyncConnection, query: Any) -> Sequence[Mapping[Any, Any]]:
    return (await conn.execute(query)).mappings().all()


def _stored(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored row as `_expected` makes one: the projection, and its side chain's heads."""
    side = {"refusals": row["refusals"] or 0, "refusal_head": row["refusal_head"]}
    return {**{field: row[field] for field in SESSION_FIELDS}, **side}


def _expected(folded: Folded) -> dict[str, Any]:
    return {**folded.row(), **folded.heads.side_row()}


def _differing(
    ids: Sequence[str], stored: dict[str, dict[str, Any]], folded: dict[str, Folded]
) -> list[str]:
    def expected(session_id: str) -> dict[str, Any] | None:
        session = folded.get(session_id)
        return _expected(session) if session is not None else None

    return [session_id for session_id in ids if stored.get(session_id) != expected(session_id)]


async def _rewrite(
    conn: AsyncConnection,
    differing: list[str],
    stored: dict[str, dict[str, Any]],
    folded: dict[str, Folded],
) -> None:
    """Mend the rows: an UPDATE where there is one (a turn waiting on the row then goes on
    against the mended row, where a new row would leave it nothing to update), an INSERT
    where there is none, a DELETE where no events explain it."""
    if not differing:
        return
    gone = [session_id for session_id in differing if session_id not in folded]
    rows = [folded[session_id].row() for session_id in differing if session_id in folded]
    if gone:
        await conn.execute(delete(sessions).where(sessions.c.session_id.in_(gone)))
    changed = [{"_id": row["session_id"], **row} for row in rows if row["session_id"] in stored]
    if changed:
        await conn.execute(_UPDATE, [_without_id(row) for row in changed])
    new = [row for row in rows if row["session_id"] not in stored]
    if new:
        await conn.execute(insert(sessions), new)
    await conn.execute(delete(side_chains).where(side_chains.c.session_id.in_(differing)))
    sides = [side for session_id in differing if (side := _side(folded, session_id)) is not None]
    if sides:
        await conn.execute(insert(side_chains), sides)


_UPDATE = update(sessions).where(sessions.c.session_id == bindparam("_id"))


def _without_id(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "session_id"}


def _side(folded: dict[str, Folded], session_id: str) -> dict[str, Any] | None:
    session = folded.get(session_id)
    return session.side_row() if session is not None else None
