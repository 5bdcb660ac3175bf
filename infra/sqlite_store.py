"""The SQLite session store: every transaction runs whole on one writer thread.

SQLite has one writer at a time anyway, so a single thread that owns the write connection
costs no concurrency, and it removes what dominates a naive async stack: a thread hand-off
per statement (100-500 µs each on small machines). Here a store call is one hop to the
writer (infra/sqlite_writer.py, which also commits concurrent transactions together) and
one back, and inside it the statements are plain `sqlite3` calls of a few µs. Each
transaction is the skeleton of infra/command_store.py: read the session's row, let the
command decide, write the plan; BEGIN IMMEDIATE takes the database lock first, so a writer
in another process cannot read the same version.
"""

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from baton.domain.commands import Command
from baton.domain.events import RequestRefused, SessionEvent
from baton.domain.identifiers import SessionId
from baton.domain.ports import StoreUnavailable
from baton.domain.recovery import Forget, Seal
from baton.domain.state import SessionState
from baton.infra.chain import ChainHeads
from baton.infra.codec import row_to_session_event
from baton.infra.command_store import CommandStore
from baton.infra.conflict import Conflict, retrying
from baton.infra.history import EVENT_COLUMNS
from baton.infra.notifier import Notifier
from baton.infra.planning import SEAL_FIELDS, Loaded, SideRow, WritePlan, plan, plan_side, seal_from
from baton.infra.sqlite_recent import RecentSessions
from baton.infra.sqlite_values import (
    db_id,
    event_from,
    event_values,
    parse_time,
    projection_values,
    seal_values,
    session_id_of,
    state_from,
    time_text,
)
from baton.infra.sqlite_writer import SqliteWriter, connect
from baton.infra.tables import EVENT_FIELDS, LOAD_SESSION, SESSION_FIELDS, UPDATED_FIELDS

T = TypeVar("T")

# sqlite3 binds None as NULL either way, but finds no adapter for it first, and the search
# raises and clears two AttributeErrors (about 2,000 instructions, make bench-instructions);
# a turn binds about thirty. A registered adapter (dict.get, in C: None for None) is found at
# once. Like every adapter, it is the process's, and changes no value bound.
_NULL: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NULL.get)

# The statements are public: the benchmark's SQL floor (bench/baselines/sql_floor_sqlite.py)
# runs these very strings, so the two cannot drift apart.
_SESSION_COLUMNS = ", ".join(SESSION_FIELDS)
SELECT_SESSION = LOAD_SESSION + "?"
LOADED_FIELDS = (*SESSION_FIELDS, "refusals", "refusal_head")  # SELECT_SESSION's, in order
INSERT_SESSION = (
    f"INSERT INTO sessions ({_SESSION_COLUMNS}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join('?' for _ in SESSION_FIELDS)})"
)
UPDATE_SESSION = (
    f"UPDATE sessions SET {', '.join(f'{field} = ?' for field in UPDATED_FIELDS)} "  # noqa: S608
    "WHERE session_id = ? AND version = ?"
)
KEEP_SIDE_HEADS = (
    "INSERT INTO side_chains (session_id, refusals, refusal_head) VALUES (?, ?, ?) "
    "ON CONFLICT (session_id) DO UPDATE "
    "SET refusals = excluded.refusals, refusal_head = excluded.refusal_head"
)
INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_FIELDS)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join('?' for _ in EVENT_FIELDS)})"
)
_SELECT_SEAL = f"SELECT {', '.join(SEAL_FIELDS)} FROM recovery WHERE lookup = ?"  # noqa: S608
KEEP_SEAL = (
    f"INSERT OR REPLACE INTO recovery ({', '.join(SEAL_FIELDS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in SEAL_FIELDS)})"
)
FORGET = {
    Forget.NEXT_TOKENS: "DELETE FROM recovery WHERE session_id = ? AND turn > 1",
    Forget.ALL: "DELETE FROM recovery WHERE session_id = ?",
}
_HISTORY = (
    f"SELECT {', '.join(EVENT_COLUMNS)} FROM events "  # noqa: S608 - fixed column names
    "WHERE session_id = ? AND seq > ? AND (? IS NULL OR turn = ?) ORDER BY seq"
)
_SWEEP = (
    "DELETE FROM recovery WHERE expires_at <= ?",
    "DELETE FROM followers WHERE until <= ?",
    "DELETE FROM refusal_budgets WHERE window_end <= ?",
)
# As infra/postgres_sql.SPEND_REFUSAL (the writer serialises it anyway).
_SPEND_REFUSAL = """
INSERT INTO refusal_budgets AS b (client, refused, window_end) VALUES (?1, 1, ?2)
ON CONFLICT (client) DO UPDATE
   SET refused = CASE WHEN b.window_end <= ?3 THEN 1 ELSE b.refused + 1 END,
       window_end = CASE WHEN b.window_end <= ?3 THEN ?2 ELSE b.window_end END
RETURNING refused, window_end
"""


class SqliteSessionStore(CommandStore):
    def __init__(
        self,
        path: str,
        *,
        synchronous: str,
        busy_timeout_ms: int,
        notifier: Notifier | None = None,
    ) -> None:
        self.notifier = notifier
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: SqliteWriter | None = None
        self._recent = RecentSessions()  # touched on the writer's thread alone

    async def open(self) -> "SqliteSessionStore":
        recent = self._recent
        conn = await asyncio.to_thread(self._connect)
        self._writer = SqliteWriter(conn, began=recent.began, undone=recent.forget_all)
        return self

    async def dispose(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None

    def _connect(self) -> sqlite3.Connection:
        return connect(
            self._path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms
        )

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` as one transaction on the writer; a lost unique-key race is a Conflict."""
        if self._writer is None:
            raise RuntimeError("the SQLite store is not open")
        try:
            return await self._writer.run(work)
        except sqlite3.IntegrityError as error:
            if "UNIQUE constraint failed" in str(error):
                raise Conflict(str(error)) from error
            raise
        except sqlite3.OperationalError as error:
            # Locked past the busy timeout (another process writing), the disk, the file.
            raise StoreUnavailable(f"SQLite: {error}") from error

    # ------------------------------------------------------------------ the skeleton

    async def _execute(self, command: Command[T]) -> T:
        recent = self._recent

        def transaction(conn: sqlite3.Connection) -> T:
            lookup = command.seal_lookup
            seal = _seal(conn, lookup) if lookup is not None else None
            subject = command.subject(seal)
            loaded = _load(conn, subject, seal, recent)
            try:
                decision = command.decide(loaded.state, seal)
                planned = plan(loaded, decision)
                written = _write(conn, planned, recent)
            except BaseException:
                recent.drop(db_id(subject))  # whatever it wrote is rolled back
                raise
            recent.remember(loaded, decision.after, planned, written)
            return decision.answer

        return await retrying(
            lambda: self._transaction(transaction), f"session {command.session_id}"
        )

    async def refuse(self, refused: RequestRefused) -> None:
        recent = self._recent

        def refuse(conn: sqlite3.Connection) -> None:
            session_id = refused.session_id
            known = _load(conn, session_id, None, recent) if session_id else Loaded(None)
            _insert_side(conn, plan_side(refused, known), recent)

        await self._transaction(refuse)

    async def load(self, session_id: SessionId) -> SessionState | None:
        recent = self._recent
        return await self._transaction(lambda conn: _load(conn, session_id, None, recent).state)

    async def history(
        self, session_id: SessionId, *, after: int = 0, turn: int | None = None
    ) -> list[SessionEvent]:
        def history(conn: sqlite3.Connection) -> list[SessionEvent]:
            rows = conn.execute(_HISTORY, (db_id(session_id), after, turn, turn)).fetchall()
            named = (dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows)
            return [row_to_session_event(event_from(row)) for row in named]

        return await self._transaction(history)

    async def sweep(self, now: datetime) -> None:
        """Erase the seals whose window has passed, and followers long gone."""

        def sweep(conn: sqlite3.Connection) -> None:
            for statement in _SWEEP:
                conn.execute(statement, (time_text(now),))

        await self._transaction(sweep)

    async def spend_refusal(
        self, client: str, at: datetime, window_end: datetime
    ) -> tuple[int, datetime]:
        """Count one more refusal of `client`: (refusals in its window, the window's end)."""

        def spend(conn: sqlite3.Connection) -> tuple[int, datetime]:
            refused, window_end_text = conn.execute(
                _SPEND_REFUSAL, (client, time_text(window_end), time_text(at))
            ).fetchone()
            ends = parse_time(window_end_text)
            assert ends is not None  # noqa: S101 - the column is NOT NULL
            return int(refused), ends

        return await self._transaction(spend)


# ---------------------------------------------------------------------- the four I/O steps


def _load(
    conn: sqlite3.Connection,
    session_id: SessionId,
    seal: Seal | None = None,
    recent: RecentSessions | None = None,
) -> Loaded:
    key = db_id(session_id)
    if recent is not None and (kept := recent.get(key)) is not None:
        return Loaded(kept[0], kept[1], seal)
    found = conn.execute(SELECT_SESSION, (key,)).fetchone()
    if found is None:
        return Loaded(None, seal=seal)
    row = loaded_row(found)
    return Loaded(state_from(row), ChainHeads.of(row), seal)


def loaded_row(found: tuple[Any, ...]) -> dict[str, Any]:
    """A row of SELECT_SESSION by column name."""
    return dict(zip(LOADED_FIELDS, found, strict=True))


def _seal(conn: sqlite3.Connection, lookup: str) -> Seal | None:
    found = conn.execute(_SELECT_SEAL, (lookup,)).fetchone()
    if found is None:
        return None
    row = dict(zip(SEAL_FIELDS, found, strict=True))
    row["session_id"] = session_id_of(row["session_id"])
    return seal_from(row, parse_time(row["expires_at"]))


def _write(
    conn: sqlite3.Connection, planned: WritePlan, recent: RecentSessions
) -> dict[str, Any] | None:
    """Write the plan; the projection row as written, if it wrote one."""
    written = None
    if planned.events:
        conn.executemany(INSERT_EVENT, [event_values(row) for row in planned.events])
    if planned.projection is not None:
        written = _write_projection(conn, planned.projection, planned.expected_version)
    if planned.side is not None:
        _insert_side(conn, planned.side, recent)
    if planned.forget is not None:
        conn.execute(FORGET[planned.forget.which], (db_id(planned.forget.session_id),))
    if planned.seal is not None:
        conn.execute(KEEP_SEAL, seal_values(planned.seal))
    return written


def _write_projection(
    conn: sqlite3.Connection, projection: dict[str, object], expected_version: int | None
) -> dict[str, Any]:
    row = projection_values(projection, new=expected_version is None)
    if expected_version is None:
        conn.execute(INSERT_SESSION, tuple(row[field] for field in SESSION_FIELDS))
        return row
    values = (*(row[field] for field in UPDATED_FIELDS), row["session_id"], expected_version)
    if conn.execute(UPDATE_SESSION, values).rowcount != 1:
        raise Conflict(f"session {projection['session_id']} moved past {expected_version}")
    return row


def _insert_side(conn: sqlite3.Connection, side: SideRow, recent: RecentSessions) -> None:
    conn.execute(INSERT_EVENT, event_values(side.row))
    if side.heads is not None:
        heads, session_id = side.heads, db_id(side.row["session_id"])
        conn.execute(KEEP_SIDE_HEADS, (session_id, heads.refusals, heads.refusal_head))
        recent.drop(session_id)  # the one place side chains move: what was kept is outdated
