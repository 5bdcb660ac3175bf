"""The PostgreSQL store's I/O: the skeleton's load and write (the one-statement paths are
infra/postgres_fast.py).

Each function takes a connection and sends the statements of infra/postgres_sql.py; the
store (infra/postgres_store.py) decides when each is used. A unique key that says no, in
the skeleton's write or in a one-statement path, is a Conflict: the store then reads the
row again, locked, and lets the domain decide again.
"""

from typing import Any

import asyncpg

from baton.domain.events import (
    EventKind,
    SessionEvent,
    SideEvent,
)
from baton.domain.identifiers import SessionId
from baton.domain.recovery import Forget, Seal
from baton.domain.values import value
from baton.infra import postgres_sql as sql
from baton.infra.chain import ChainHeads, row_payload
from baton.infra.codec import event_to_row, row_to_session_event, row_to_state
from baton.infra.conflict import Conflict
from baton.infra.planning import (
    SEAL_FIELDS,
    Loaded,
    SideRow,
    WritePlan,
    plan_side,
    seal_from,
)
from baton.infra.tables import EVENT_FIELDS, SESSION_FIELDS, UPDATED_FIELDS


def projection_of(record: asyncpg.Record) -> dict[str, Any]:
    row: dict[str, Any] = dict(record)
    row["session_id"] = str(row["session_id"])
    return row


def _event_args(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(field) for field in EVENT_FIELDS)


# --------------------------------------------------------------- the skeleton's steps


async def load(
    conn: asyncpg.Connection, session_id: SessionId, *, lock: bool = False, seal: Seal | None = None
) -> Loaded:
    """The session's row; with `lock`, held (FOR NO KEY UPDATE) until the transaction ends."""
    query = sql.LOCK_SESSION if lock else sql.SELECT_SESSION
    record = await conn.fetchrow(query, session_id)
    if record is None:
        return Loaded(None, seal=seal)
    return Loaded(row_to_state(projection_of(record)), ChainHeads.of(record), seal)


async def load_with_seal(
    conn: asyncpg.Connection, session_id: SessionId, lookup: str | None
) -> Loaded:
    """The session's row and the seal under `lookup`, as of one snapshot (unlocked)."""
    record = await conn.fetchrow(sql.SELECT_SESSION_AND_SEAL, session_id, lookup)
    assert record is not None  # noqa: S101 - the query's FROM is one row, joined or not
    return loaded_with_seal(record)


def loaded_with_seal(record: asyncpg.Record) -> Loaded:
    """A row of sql.LOADED_AND_SEAL's columns: the session (NULL: there is none) and the
    seal (NULL: none under the lookup)."""
    found = record[f"{sql.SEAL_PREFIX}lookup"] is not None
    seal = seal_from({f: record[f"{sql.SEAL_PREFIX}{f}"] for f in SEAL_FIELDS}) if found else None
    if record["session_id"] is None:
        return Loaded(None, seal=seal)
    return Loaded(row_to_state(projection_of(record)), ChainHeads.of(record), seal)


async def load_seal(
    conn: asyncpg.Connection, lookup: str | None, *, lock: bool = False
) -> Seal | None:
    """The seal under `lookup`; with `lock`, once no other transaction holds that lookup
    (until this one ends). A keyed start locks no row (its session is not there yet), so
    without this, concurrent starts with one key would each see no seal and each start a
    session. The lock is its own statement: one that also read would read a snapshot taken
    before it waited, blind to the seal the winner just committed."""
    if lookup is None:
        return None
    if lock:
        await conn.execute(sql.LOCK_LOOKUP, lookup)
    record = await conn.fetchrow(sql.SELECT_SEAL, lookup)
    return seal_from(record) if record is not None else None


async def write(conn: asyncpg.Connection, planned: WritePlan) -> None:
    try:
        if planned.projection is not None and planned.expected_version is None:
            await _insert_session(conn, planned)
        else:
            await _append(conn, planned)
        if planned.side is not None:
            await _insert_side(conn, planned.side)
        await _write_seals(conn, planned)
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error
    if planned.events:
        await _wake(conn, planned)


async def _write_seals(conn: asyncpg.Connection, planned: WritePlan) -> None:
    if planned.forget is not None:
        forget = sql.FORGET_ALL if planned.forget.which is Forget.ALL else sql.FORGET_NEXT_TOKENS
        await conn.execute(forget, planned.forget.session_id)
    if planned.seal is not None:
        await conn.execute(sql.KEEP_SEAL, *(planned.seal[field] for field in SEAL_FIELDS))


async def _wake(conn: asyncpg.Connection, planned: WritePlan) -> None:
    """Wake the session's followers; and a replica running its turn, asked to stop it."""
    session_id = planned.events[0]["session_id"]
    await conn.fetchval(sql.WAKE_FOLLOWERS, session_id)
    if any(row["kind"] == EventKind.CANCEL_REQUESTED for row in planned.events):
        await conn.execute(sql.NOTIFY_CANCEL, session_id)


async def _insert_session(conn: asyncpg.Connection, planned: WritePlan) -> None:
    """A new session and its first event, in one statement."""
    assert planned.projection is not None  # noqa: S101 - write() checked it
    (started,) = planned.events
    values = (planned.projection[field] for field in SESSION_FIELDS)
    await conn.execute(sql.START, *values, *_event_args(started))


async def _append(conn: asyncpg.Connection, planned: WritePlan) -> None:
    if planned.events:
        await conn.executemany(sql.INSERT_EVENT, [_event_args(row) for row in planned.events])
    if planned.projection is None:
        return
    values = (planned.projection[field] for field in UPDATED_FIELDS)
    session_id = planned.projection["session_id"]
    written = await conn.execute(sql.UPDATE_SESSION, session_id, *values, planned.expected_version)
    if written != "UPDATE 1":
        raise Conflict(f"session {session_id} moved past version {planned.expected_version}")


async def _insert_side(conn: asyncpg.Connection, side: SideRow) -> None:
    """The skeleton locks the projection row, not the side chain's (a refusal never waits
    for a turn), so the heads it loaded may be stale by now: a fact of a known session is
    linked by the statement a refusal uses, against the side chain's row as it is."""
    row = side.row
    if side.heads is None:
        await conn.execute(sql.INSERT_EVENT, *_event_args(row))
        return
    if await conn.fetchval(sql.REFUSE, *_refuse_args(row)) is None:
        raise Conflict(f"session {row['session_id']} is gone")


def _refuse_args(row: dict[str, Any]) -> tuple[Any, ...]:
    """REFUSE's parameters for a fact without a seq, as its event row has them."""
    return (row["session_id"], row["kind"], row["data"], row["recorded_at"], row_payload(row))


@value
class SideFact:
    """A fact without a seq (a refusal, a recovery) of a named session, as the store
    records it: `replays` is the turn whose events a replay's recovery reads in the same
    statement, None for any other fact."""

    event: SideEvent
    replays: int | None = None

    @property
    def session_id(self) -> SessionId:
        named = self.event.session_id
        assert named is not None  # noqa: S101 - only a named session's fact is linked
        return named


SideAnswer = tuple[bool, list[asyncpg.Record]]
"""Whether the fact was linked into its session's side chain (False: the session is not
there, and the fact must stand alone), and the rows of the turn it replays."""


def side_args(fact: SideFact) -> tuple[Any, ...]:
    """REFUSE's parameters, and the turn RECOVER_TURN reads (BATCH_SIDE's, row for row)."""
    return (*_refuse_args(event_to_row(fact.event)), fact.replays)


async def side_alone(conn: asyncpg.Connection, fact: SideFact) -> SideAnswer:
    """Link a fact into its session's side chain, without reading the session's row, by one
    statement that takes only the side chain's columns; a replay's recovery reads the
    events of its turn in the same statement."""
    args = side_args(fact)
    if fact.replays is None:
        return await conn.fetchval(sql.REFUSE, *args[:-1]) is not None, []
    records = await conn.fetch(sql.RECOVER_TURN, *args)
    return bool(records[0]["linked"]), [r for r in records if r["position"] is not None]


async def stand_alone(conn: asyncpg.Connection, event: SideEvent) -> None:
    """A fact that names no session, or one that is not there (pruned): in no side chain."""
    await _insert_side(conn, plan_side(event, Loaded(None)))


def as_events(rows: list[asyncpg.Record]) -> list[SessionEvent]:
    """Event-table rows (a turn's, or a history's) as the domain's events."""
    return [row_to_session_event(projection_of(row)) for row in rows]


async def history(
    conn: asyncpg.Connection, session_id: SessionId, after: int, turn: int | None
) -> list[SessionEvent]:
    return as_events(await conn.fetch(sql.HISTORY, session_id, after, turn))
