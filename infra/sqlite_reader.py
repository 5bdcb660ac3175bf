"""The read side on SQLite: a connection of its own, on a thread of its own.

WAL lets readers run beside the writer without waiting for it, so reads never queue
behind the writer thread's group commits. SQLite holds its single write lock from BEGIN to
COMMIT, so rows commit in position order and the feed's cursor is simply the position.
"""

import asyncio
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from baton.domain.identifiers import parse_session_id
from baton.domain.ports import StoreUnavailable
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
    page_of,
    sessions_query,
    stored_event,
    with_void,
)
from baton.infra.sqlite_values import (
    db_id,
    event_from,
    json_value,
    parse_time,
    session_id_of,
    time_text,
)

T = TypeVar("T")
_CURSOR = re.compile(r"[0-9]{1,19}")
_FEED = f"SELECT {', '.join(history.EVENT_COLUMNS)} FROM events"  # noqa: S608
_HAS_VERSION_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"


class SqliteReader:
    def __init__(self, path: str, *, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-sqlite-reader")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Only SELECTs run here, so this connection never takes the write lock.
            self._conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout_ms / 1000, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
        return self._conn

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, lambda: work(self._connection()))
        except sqlite3.OperationalError as error:
            raise StoreUnavailable(f"SQLite: {error}") from error

    async def dispose(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)

    # ------------------------------------------------------------------ the reader

    async def session_events(self, session_id: str) -> list[HistoryEvent] | None:
        parsed = parse_session_id(session_id)
        if parsed is None:
            return None
        rows = await self._read(
            lambda conn: conn.execute(history.SESSION_EVENTS, (db_id(parsed),)).fetchall()
        )
        return with_void(event_from(row) for row in rows) or None

    async def history_page(
        self, session_id: str, after: int | None, limit: int
    ) -> tuple[list[HistoryEvent], str | None] | None:
        parsed = parse_session_id(session_id)
        if parsed is None:
            return None
        key = db_id(parsed)

        def page(conn: sqlite3.Connection) -> tuple[list[Any], Any] | None:
            rows = conn.execute(history.HISTORY_PAGE, (key, after or 0, limit)).fetchall()
            if not rows and conn.execute(history.SESSION_EXISTS, (key,)).fetchone() is None:
                return None
            last = attempt_end_after(rows)
            end = conn.execute(history.ATTEMPT_END, (key, last)).fetchone() if last else None
            return rows, end

        found = await self._read(page)
        if found is None:
            return None
        rows, end = found
        ended = event_from(end) if end is not None else None
        return history_page([event_from(row) for row in rows], ended, limit)

    async def list_sessions(self, query: SessionFilter) -> tuple[list[SessionSummary], str | None]:
        sql, params = sessions_query(query)
        values = tuple(_bind(kind, value) for kind, value in params)
        rows = await self._read(lambda conn: conn.execute(sql, values).fetchall())
        return page_of([_summary(row) for row in rows], query.limit)

    async def feed(self, after: str | None, limit: int) -> tuple[list[StoredEvent], str | None]:
        if after is not None and _CURSOR.fullmatch(after) is None:
            raise InvalidCursor("expected a position")
        where, values = ("WHERE position > ? ", (bigint(after),)) if after else ("", ())
        sql = f"{_FEED} {where}ORDER BY position LIMIT ?"
        rows = await self._read(lambda conn: conn.execute(sql, (*values, limit)).fetchall())
        served = [stored_event(event_from(row)) for row in rows]
        return served, str(served[-1].position) if served else after

    async def count_sessions(self) -> int:
        row = await self._read(lambda conn: conn.execute(history.COUNT_SESSIONS).fetchone())
        return int(row[0])

    async def schema_revision(self) -> str | None:
        def revision(conn: sqlite3.Connection) -> str | None:
            if conn.execute(_HAS_VERSION_TABLE).fetchone() is None:
                return None
            row = conn.execute(history.REVISION).fetchone()
            return str(row[0]) if row else None

        return await self._read(revision)


def _bind(kind: str, value: Any) -> Any:
    if kind == "id":
        return db_id(value)
    return time_text(value) if kind == "time" else value


def _summary(db_row: sqlite3.Row) -> dict[str, Any]:
    row = dict(db_row)
    row["session_id"] = session_id_of(row["session_id"])
    row["created_at"] = parse_time(row["created_at"])
    row["updated_at"] = parse_time(row["updated_at"])
    row["last_outcome"] = json_value(row["last_outcome"])
    return row
