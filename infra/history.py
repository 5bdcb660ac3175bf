"""Read-side queries for audit: a session's stored history, the session list, and a global
feed of every event that a consumer can follow with a cursor and never miss a row.

Nothing here writes; these queries read the tables the stores keep and change no store.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Select, Text, cast, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.identifiers import parse_session_id
from domain.json import JsonValue
from domain.state import SessionStatus
from infra.database import POSTGRESQL, backend_of
from infra.tables import events, sessions

_BIGINT_MAX = 2**63 - 1
_SQLITE_CURSOR = re.compile(r"[0-9]{1,19}")
_POSTGRES_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})")


class InvalidCursor(ValueError):
    """A cursor this database never handed out (malformed, or another backend's)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """One row of the event table, exactly as stored."""

    position: int
    session_id: str | None
    seq: int | None
    refusal_seq: int | None
    kind: str
    turn: int | None
    consumed: str | None
    issued: str | None
    data: JsonValue
    recorded_at: datetime
    hash: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEvent(StoredEvent):
    """A session's event, and whether it is a record its turn never kept."""

    void: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSummary:
    session_id: str
    status: str
    version: int
    turn: int
    created_at: datetime
    updated_at: datetime
    refusals: int
    last_outcome: JsonValue


_EVENT_COLUMNS = tuple(
    name for name in StoredEvent.__dataclass_fields__ if name in events.c
)  # every column but txid: an internal ordering key, not part of the fact


def _columns(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {name: row[name] for name in _EVENT_COLUMNS}


# --------------------------------------------------------------- one session's history


def void_records(stored: Iterable[StoredEvent]) -> set[int]:
    """Positions of the `record` events whose turn attempt did not commit.

    In seq order, a turn attempt runs from its claim (`started`/`claimed`) to its end. Its
    records are kept by its `committed`; a `released` (failed, timed out, cancelled), an
    `expired` (the lease lapsed and another claim took over), a `closed`, or a later claim
    ends it without a commit and voids them. Records of an attempt still running are not
    void: it may yet commit.
    """
    void: set[int] = set()
    pending: list[int] = []
    for event in sorted((e for e in stored if e.seq is not None), key=lambda e: e.seq or 0):
        if event.kind == "record":
            pending.append(event.position)
        elif event.kind == "committed":
            pending.clear()
        elif event.kind in {"released", "expired", "closed", "claimed", "started"}:
            void.update(pending)
            pending.clear()
    return void


async def session_events(engine: AsyncEngine, session_id: str) -> list[HistoryEvent] | None:
    """Every stored event of a session, its refusals included, in position order; None if
    no such session (a malformed id included)."""
    parsed = parse_session_id(session_id)
    if parsed is None:
        return None
    query = select(events).where(events.c.session_id == parsed).order_by(events.c.position)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    if not rows:  # every session's first event is its `started`
        return None
    void = void_records(StoredEvent(**_columns(row)) for row in rows)
    return [HistoryEvent(**_columns(row), void=row["position"] in void) for row in rows]


# --------------------------------------------------------------- the session list


def _session_cursor(after: str) -> str:
    parsed = parse_session_id(after)
    if parsed is None:
        raise InvalidCursor("not a session id")
    return parsed


async def list_sessions(
    engine: AsyncEngine,
    *,
    status: SessionStatus | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    after: str | None = None,
    limit: int = 50,
) -> tuple[list[SessionSummary], str | None]:
    """One page of sessions in session id order (UUIDv7: creation order), and the cursor of
    the next page (the last id on this one), or None if this is the last.

    `created_after` is inclusive and `created_before` exclusive, so adjacent ranges tile."""
    query = select(
        sessions.c.session_id,
        sessions.c.status,
        sessions.c.version,
        sessions.c.turn,
        sessions.c.created_at,
        sessions.c.updated_at,
        sessions.c.refusals,
        sessions.c.last_outcome,
    )
    if status is not None:
        query = query.where(sessions.c.status == status.value)
    if created_after is not None:
        query = query.where(sessions.c.created_at >= created_after)
    if created_before is not None:
        query = query.where(sessions.c.created_at < created_before)
    if after is not None:
        query = query.where(sessions.c.session_id > _session_cursor(after))
    # One row more than the page tells whether another page follows.
    query = query.order_by(sessions.c.session_id).limit(limit + 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    page = [SessionSummary(**row) for row in rows[:limit]]
    return page, page[-1].session_id if len(rows) > limit else None


# --------------------------------------------------------------- the global feed


async def feed(
    engine: AsyncEngine, after: str | None, limit: int
) -> tuple[list[StoredEvent], str | None]:
    """Up to `limit` events after the cursor `after` (None: from the beginning), and the
    cursor to pass next time (`after` itself when there was nothing new).

    Why not simply `position > after`: a position is taken when a row is inserted, not when
    its transaction commits. On PostgreSQL, transaction A can insert position 10, B insert
    11 and commit, a reader see 11, move its cursor past it, and never see 10 when A commits
    a moment later. Serialising appends would close that gap at the price of all write
    concurrency, so the feed orders by something that is final instead:

    - PostgreSQL stamps every row with its inserting transaction's id (`txid`, a column
      default). The snapshot's xmin is the oldest transaction still running: every
      transaction below it has ended, and one that is running now or starts later has an
      id at least that large. So the rows with txid < xmin are all there will ever be, and
      ordered by (txid, position) they form a prefix that only grows at its end. The feed
      serves that prefix, with the pair (txid, position) of the last row served as the
      cursor. Both the bound and the rows come from one statement, and so from one
      snapshot. A row appears once the transactions older than its own have ended, so a
      long-running transaction delays the feed; it never makes it skip.
    - SQLite holds its single write lock from BEGIN to COMMIT, so rows commit in position
      order and the position itself is the cursor.

    Cursors are opaque text: "<txid>.<position>" on PostgreSQL, "<position>" on SQLite.
    """
    if backend_of(engine) == POSTGRESQL:
        query, cursor_of = _postgres_feed(after), _postgres_cursor
    else:
        query, cursor_of = _sqlite_feed(after), _sqlite_cursor
    async with engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit))).mappings().all()
    served = [StoredEvent(**_columns(row)) for row in rows]
    return served, cursor_of(rows[-1]) if rows else after


def _bigint(text: str) -> int:
    value = int(text)
    if value > _BIGINT_MAX:
        raise InvalidCursor("out of range")
    return value


def _postgres_feed(after: str | None) -> Select[Any]:
    # The snapshot's xmin, as a bigint like the txid column (xid8 has no direct cast).
    xmin = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)
    query = select(events).where(events.c.txid < xmin)
    if after is not None:
        match = _POSTGRES_CURSOR.fullmatch(after)
        if match is None:
            raise InvalidCursor("expected <txid>.<position>")
        txid, position = (_bigint(part) for part in match.groups())
        query = query.where(tuple_(events.c.txid, events.c.position) > tuple_(txid, position))
    return query.order_by(events.c.txid, events.c.position)


def _postgres_cursor(row: Mapping[Any, Any]) -> str:
    return f"{row['txid']}.{row['position']}"


def _sqlite_feed(after: str | None) -> Select[Any]:
    query = select(events)
    if after is not None:
        if _SQLITE_CURSOR.fullmatch(after) is None:
            raise InvalidCursor("expected a position")
        query = query.where(events.c.position > _bigint(after))
    return query.order_by(events.c.position)


def _sqlite_cursor(row: Mapping[Any, Any]) -> str:
    return str(row["position"])
