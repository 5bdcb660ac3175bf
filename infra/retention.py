"""Retention: removing closed sessions, each batch exported before it goes, on a live database.

`baton prune` works through the sessions closed before its date a batch at a time, each
batch in a transaction of its own, so the turns of other sessions never wait for the whole
run (on PostgreSQL they do not wait at all; SQLite has one writer, which waits for one
batch at most). In each transaction:

1. The batch's projection rows are locked (PostgreSQL: FOR UPDATE), and those no longer
   closed before the date (or gone) are left alone. Every write to a session's events
   takes that row first: a turn's UPDATE, a refusal's or a recovery's KEY SHARE (infra/
   postgres_sql.py). So from here to the commit nothing can be added to these sessions, and
   a fact that was on its way waits, then finds the session gone and stands alone, naming
   it in its data (infra/planning.py). On SQLite the transaction holds the write lock.
2. The sessions' events are read, written to the export and flushed to the disk.
3. Their events are deleted, and the deletion must count exactly the events written:
   anything else stops the run and rolls the batch back. No event is ever deleted that was
   not exported first (unless the operator asked for no export at all).
4. Their projection, side-chain, recovery and follower rows go, and a row in `pruned` keeps
   each session's final chain heads, so that `baton verify --against` can tell a session
   pruned since its anchor from one deleted behind the operator's back.

Refusals that name no session (an unknown id, or a session already pruned) belong to no
session and are never pruned: they stay, each hash standing alone.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton.domain.state import SessionStatus
from baton.domain.values import value
from baton.infra.chain import in_chain_order
from baton.infra.database import batch
from baton.infra.export_format import ExportWriter
from baton.infra.tables import events, followers, pruned, recovery, sessions, side_chains

BATCH = 200  # sessions removed per transaction


class PruneStopped(RuntimeError):
    """A batch did not delete exactly what it exported; it was rolled back."""


@value
class Pruned:
    sessions: int = 0
    events: int = 0

    def __add__(self, other: "Pruned") -> "Pruned":
        return Pruned(self.sessions + other.sessions, self.events + other.events)


async def closed_before(engine: AsyncEngine, before: datetime) -> list[str]:
    """Sessions closed, and last changed, before `before`. A closed session never changes
    again (its events; refusals still arrive), so this list stays true while it is pruned."""
    query = (
        select(sessions.c.session_id)
        .where(sessions.c.status == SessionStatus.CLOSED.value, sessions.c.updated_at < before)
        .order_by(sessions.c.session_id)
    )
    async with engine.connect() as conn:
        return [str(value) for value in (await conn.execute(query)).scalars()]


async def prune_sessions(
    engine: AsyncEngine,
    session_ids: Sequence[str],
    before: datetime,
    at: datetime,
    export: ExportWriter | None,
) -> Pruned:
    """Remove those of `session_ids` still closed before `before`, a batch per transaction,
    each batch written to `export` (unless None) before its events are deleted."""
    done = Pruned()
    for start in range(0, len(session_ids), BATCH):
        chunk = session_ids[start : start + BATCH]
        async with batch(engine) as conn:
            done += await _prune_batch(conn, chunk, before, at, export)
    return done


async def _prune_batch(
    conn: AsyncConnection,
    chunk: Sequence[str],
    before: datetime,
    at: datetime,
    export: ExportWriter | None,
) -> Pruned:
    doomed = await _lock_closed(conn, chunk, before)
    if not doomed:
        return Pruned()
    query = in_chain_order(select(events)).where(events.c.session_id.in_(doomed))
    rows = (await conn.execute(query)).mappings().all()
    if export is not None:
        for row in rows:
            export.write(row)
        export.sync()
    gone = (await conn.execute(delete(events).where(events.c.session_id.in_(doomed)))).rowcount
    if gone != len(rows):
        raise PruneStopped(
            f"{gone} event(s) of {len(doomed)} session(s) were there to delete, but {len(rows)}"
            " were exported: the batch was rolled back, nothing of it removed"
        )
    for table in (sessions, side_chains, recovery, followers, pruned):
        await conn.execute(delete(table).where(table.c.session_id.in_(doomed)))
    tombstones = _tombstones(rows, at)
    if tombstones:
        await conn.execute(insert(pruned), tombstones)
    return Pruned(len(doomed), len(rows))


async def _lock_closed(conn: AsyncConnection, chunk: Sequence[str], before: datetime) -> list[str]:
    """Those of `chunk` still closed before `before`, their rows locked until the commit."""
    query = (
        select(sessions.c.session_id)
        .where(
            sessions.c.session_id.in_(chunk),
            sessions.c.status == SessionStatus.CLOSED.value,
            sessions.c.updated_at < before,
        )
        .order_by(sessions.c.session_id)
        .with_for_update()
    )
    return [str(value) for value in (await conn.execute(query)).scalars()]


def _tombstones(rows: Sequence[Mapping[str, Any]], at: datetime) -> list[dict[str, Any]]:
    """Each session's final chain heads, from the events that were exported."""
    heads: dict[str, dict[str, Any]] = {}
    for row in rows:
        session_id = str(row["session_id"])
        entry = heads.setdefault(
            session_id,
            {"session_id": session_id, "version": 0, "head_hash": None, "refusals": 0},
        )
        if row["seq"] is not None:
            entry.update(version=row["seq"], head_hash=row["hash"])
        else:
            entry.update(refusals=entry["refusals"] + 1, refusal_head=row["hash"])
    return [{"refusal_head": None, **entry, "pruned_at": at} for entry in heads.values()]
