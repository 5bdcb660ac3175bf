"""The read side on PostgreSQL, on the store's own pool (one pool per process).

Why the feed is not simply `position > after`: a position is taken when a row is inserted,
not when its transaction commits. Transaction A can insert position 10, B insert 11 and
commit, a reader see 11, move its cursor past it, and never see 10 when A commits a moment
later. Serialising appends would close that gap at the price of all write concurrency, so
the feed orders by something that is final instead. PostgreSQL stamps every row with its
inserting transaction's id (`txid`, a column default). The snapshot's xmin is the oldest
transaction still running: every transaction below it has ended, and one that is running
now or starts later has an id at least that large. So the rows with txid < xmin are all
there will ever be, and ordered by (txid, position) they form a prefix that only grows at
its end. The feed serves that prefix, with the pair (txid, position) of the last row served
as the cursor, "<txid>.<position>". Both the bound and the rows come from one statement, and
so from one snapshot. A row appears once the transactions older than its own have ended,
so a long-running transaction delays the feed; it never makes it skip.
"""

import re
from typing import Any

import asyncpg

from baton.domain.identifiers import parse_session_id
from baton.infra import history
from baton.infra.history import (
    HistoryEvent,
    InvalidCursor,
    SessionFilter,
    SessionSummary,
    StoredEvent,
    attempt_end_after,
    bigint,
    history_page,
    numbered,
    page_of,
    sessions_query,
    stored_event,
    with_void,
)
from baton.infra.postgres_pool import PostgresPool, unavailable_on_outage

_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})")
# The snapshot's xmin, as a bigint like the txid column (xid8 has no direct cast).
_XMIN = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_FEED = f"SELECT {', '.join(history.EVENT_COLUMNS)}, txid FROM events WHERE txid < {_XMIN}"  # noqa: S608
_SESSION_EVENTS = numbered(history.SESSION_EVENTS)
_HISTORY_PAGE = numbered(history.HISTORY_PAGE)
_ATTEMPT_END = numbered(history.ATTEMPT_END)
_SESSION_EXISTS = numbered(history.SESSION_EXISTS)


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row: dict[str, Any] = dict(record)
    if row.get("session_id") is not None:
        row["session_id"] = str(row["session_id"])
    return row


class PostgresReader:
    def __init__(self, pool: PostgresPool) -> None:
        self.pool = pool

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return [_row(record) for record in await conn.fetch(sql, *args)]

    @unavailable_on_outage
    async def session_events(self, session_id: str) -> list[HistoryEvent] | None:
        parsed = parse_session_id(session_id)
        if parsed is None:
            return None
        return with_void(await self._fetch(_SESSION_EVENTS, parsed)) or None

    @unavailable_on_outage
    async def history_page(
        self, session_id: str, after: int | None, limit: int
    ) -> tuple[list[HistoryEvent], str | None] | None:
        parsed = parse_session_id(session_id)
        if parsed is None:
            return None
        # One snapshot for the page, its attempt's end and the existence check.
        async with self.pool.connection() as conn, conn.transaction(isolation="repeatable_read"):
            rows = [_row(r) for r in await conn.fetch(_HISTORY_PAGE, parsed, after or 0, limit)]
            if not rows and await conn.fetchval(_SESSION_EXISTS, parsed) is None:
                return None
            last = attempt_end_after(rows)
            end = await conn.fetchrow(_ATTEMPT_END, parsed, last) if last else None
        return history_page(rows, _row(end) if end is not None else None, limit)

    @unavailable_on_outage
    async def list_sessions(self, query: SessionFilter) -> tuple[list[SessionSummary], str | None]:
        sql, params = sessions_query(query)
        rows = await self._fetch(numbered(sql), *(value for _, value in params))
        return page_of(rows, query.limit)

    @unavailable_on_outage
    async def feed(self, after: str | None, limit: int) -> tuple[list[StoredEvent], str | None]:
        sql, args = _FEED, []
        if after is not None:
            match = _CURSOR.fullmatch(after)
            if match is None:
                raise InvalidCursor("expected <txid>.<position>")
            sql += " AND (txid, position) > ($1, $2)"
            args = [bigint(part) for part in match.groups()]
        sql += f" ORDER BY txid, position LIMIT ${len(args) + 1}"
        rows = await self._fetch(sql, *args, limit)
        cursor = f"{rows[-1]['txid']}.{rows[-1]['position']}" if rows else after
        return [stored_event(row) for row in rows], cursor

    @unavailable_on_outage
    async def count_sessions(self) -> int:
        async with self.pool.connection() as conn:
            return int(await conn.fetchval(history.COUNT_SESSIONS))

    @unavailable_on_outage
    async def schema_revision(self) -> str | None:
        async with self.pool.connection() as conn:
            if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
                return None
            revision = await conn.fetchval(history.REVISION)
            return str(revision) if revision is not None else None
