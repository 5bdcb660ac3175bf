"""The SQLite session store: every transaction runs whole on one writer thread.

SQLite has one writer at a time anyway, so a single thread that owns the write connection
costs no concurrency, and it removes what dominates a naive async stack: a thread hand-off
per statement (100-500 µs each on small machines). Here a store call is one hop to the
writer (infra/sqlite_writer.py, which also commits concurrent transactions together) and
one back, and inside it the statements are plain `sqlite3` calls of a few µs. Each
transaction reads the session's row, asks the domain what happens, and writes the events
and the projection they fold into; BEGIN IMMEDIATE takes the database lock first, so a
writer in another process cannot read the same version.

Values are laid out exactly as SQLAlchemy lays them out (uuid as 32 hex digits, times as
"YYYY-MM-DD HH:MM:SS.ffffff" UTC, JSON as text), so migrations, the projection rebuild and
the tests read these rows through infra/tables.py unchanged.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from domain import decisions
from domain.events import (
    ClaimRenewed,
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionEvent,
    SessionStarted,
    TurnCommitted,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import Contended, HandlerOutcome
from domain.ports import ClaimGranted, StoreUnavailable
from domain.refusals import Refusal
from domain.state import Claim, SessionState, fold
from infra.chain import ChainHeads, standalone
from infra.codec import event_to_row, row_to_state, state_to_row
from infra.conflict import CLAIM_ATTEMPTS, Conflict, StoreCorrupted
from infra.sqlite_writer import SqliteWriter
from infra.tables import SESSION_FIELDS

T = TypeVar("T")

# The store's statements and value helpers are public because the benchmark's SQL floor
# (bench/baselines/sql_floor_sqlite.py) runs these very strings, so the two cannot drift.
_SESSION_COLUMNS = ", ".join(SESSION_FIELDS)
SELECT_SESSION = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?"  # noqa: S608
INSERT_SESSION = (
    f"INSERT INTO sessions ({_SESSION_COLUMNS}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join('?' for _ in SESSION_FIELDS)})"
)
UPDATE_SESSION = (
    "UPDATE sessions SET version = ?, turn = ?, status = ?, token_digest = ?, claim_turn = ?, "
    "claim_seq = ?, claim_owner = ?, lease_until = ?, state = ?, last_outcome = ?, "
    "updated_at = ?, head_hash = ? WHERE session_id = ? AND version = ?"
)
# The fields UPDATE_SESSION sets, in its order (the key and the old version follow).
UPDATED_FIELDS = tuple(
    f for f in SESSION_FIELDS if f not in {"session_id", "created_at", "refusals", "refusal_head"}
)
UPDATE_REFUSALS = "UPDATE sessions SET refusals = ?, refusal_head = ? WHERE session_id = ?"
INSERT_EVENT = (
    "INSERT INTO events "
    "(session_id, seq, refusal_seq, kind, turn, consumed, issued, data, recorded_at, hash) "
    "VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_JSON_COLUMNS = ("state", "last_outcome")

_json_encoder = msgspec.json.Encoder()


def _json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


def db_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if text is not None else None


_TIME_FIELDS = ("lease_until", "created_at", "updated_at")


def db_id(session_id: str) -> str:
    return session_id.replace("-", "")


def _session_id(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def event_values(
    row: dict[str, Any], linked: str, refusal_seq: int | None = None
) -> tuple[Any, ...]:
    """An event_to_row dict as INSERT_EVENT's values, with its chain link."""
    session_id = row["session_id"]
    return (
        db_id(session_id) if session_id is not None else None,
        row["seq"],
        refusal_seq,
        row["kind"],
        row["turn"],
        row["consumed"],
        row["issued"],
        _json(row["data"]),
        db_time(row["recorded_at"]),
        linked,
    )


def _state_from(db_row: sqlite3.Row) -> SessionState:
    row = dict(db_row)
    row["session_id"] = _session_id(row["session_id"])
    for column in _JSON_COLUMNS:
        row[column] = msgspec.json.decode(row[column]) if row[column] is not None else None
    for column in _TIME_FIELDS:
        row[column] = _parse_time(row[column])
    return row_to_state(row)


def _state_values(state: SessionState, heads: ChainHeads) -> dict[str, Any]:
    row = {**state_to_row(state), **heads.as_row()}
    row["session_id"] = db_id(row["session_id"])
    for column in _JSON_COLUMNS:
        row[column] = _json(row[column])
    for column in _TIME_FIELDS:
        row[column] = db_time(row[column]) if row[column] is not None else None
    return row


def connect(path: str, *, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """The writer's connection (public: the benchmark's SQL floor opens its own this way)."""
    conn = sqlite3.connect(
        path,
        isolation_level=None,  # transactions are the writer's: BEGIN IMMEDIATE ... COMMIT
        check_same_thread=False,  # opened here, then used by the writer thread alone
        timeout=busy_timeout_ms / 1000,
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    return conn


class SqliteSessionStore:
    def __init__(self, path: str, *, synchronous: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: SqliteWriter | None = None

    async def open(self) -> "SqliteSessionStore":
        self._writer = SqliteWriter(
            await asyncio.to_thread(
                connect,
                self._path,
                synchronous=self._synchronous,
                busy_timeout_ms=self._busy_timeout_ms,
            )
        )
        return self

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None

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

    # ------------------------------------------------------------------ the port

    async def start(self, started: SessionStarted) -> ClaimGranted:
        return await self._transaction(
            lambda conn: ClaimGranted(started, _append(conn, None, ChainHeads(), [started]))
        )

    async def claim(
        self,
        session_id: SessionId,
        presented: TokenDigest | None,
        input: JsonObject,
        at: datetime,
        lease: Lease,
    ) -> ClaimGranted | Refusal:
        def claim(conn: sqlite3.Connection) -> ClaimGranted | Refusal:
            state, heads = _load(conn, session_id)
            decision = decisions.claim_turn(
                state, session_id=session_id, presented=presented, input=input, lease=lease, at=at
            )
            if isinstance(decision, Refusal):
                refused = decisions.record_refusal(
                    decision, state=state, presented_id=session_id, at=at
                )
                _insert_refusal(conn, refused, heads if state else None)
                return decision
            return ClaimGranted(decision.claimed, _append(conn, state, heads, decision.events))

        for _ in range(CLAIM_ATTEMPTS):
            try:
                return await self._transaction(claim)
            except Conflict:
                continue
        raise StoreCorrupted(f"claims on session {session_id} keep conflicting")

    async def renew(
        self, session_id: SessionId, claim: Claim, lease: Lease, at: datetime
    ) -> ClaimRenewed | Contended:
        def renew(conn: sqlite3.Connection) -> ClaimRenewed | Contended:
            state, heads = _load(conn, session_id)
            decision = decisions.renew_claim(state, claim, lease, at)
            if isinstance(decision, ClaimRenewed):
                _append(conn, state, heads, [decision])
            return decision

        try:
            return await self._transaction(renew)
        except Conflict:
            return await self._contended(session_id)

    async def append_record(
        self, session_id: SessionId, claim: Claim, record: JsonValue, at: datetime
    ) -> RecordAppended | Contended:
        def append(conn: sqlite3.Connection) -> RecordAppended | Contended:
            state, heads = _load(conn, session_id)
            decision = decisions.append_record(state, claim, record, at)
            if isinstance(decision, RecordAppended):
                _append(conn, state, heads, [decision])
            return decision

        try:
            return await self._transaction(append)
        except Conflict:
            return await self._contended(session_id)

    async def commit(
        self,
        session_id: SessionId,
        claim: Claim,
        outcome: HandlerOutcome,
        issued: TokenDigest,
        at: datetime,
        *,
        consumed: TokenDigest | None,
        sealed: str | None = None,
    ) -> TurnCommitted | Contended:
        def commit(conn: sqlite3.Connection) -> TurnCommitted | Contended:
            state, heads = _load(conn, session_id)
            if state is not None and state.token_digest != consumed:
                return Contended(current=state.version)  # not the token the claim was made with
            decision = decisions.commit_turn(state, claim, outcome, issued, at, sealed=sealed)
            if isinstance(decision, TurnCommitted):
                _append(conn, state, heads, [decision])
            return decision

        try:
            return await self._transaction(commit)
        except Conflict:
            return await self._contended(session_id)

    async def release(
        self,
        session_id: SessionId,
        claim: Claim,
        cause: ReleaseCause,
        error: str | None,
        at: datetime,
        *,
        close: CloseCause | None = None,
    ) -> None:
        def release(conn: sqlite3.Connection) -> None:
            state, heads = _load(conn, session_id)
            released = decisions.release_turn(state, claim, cause, error, at)
            if state is None or released is None:
                return  # the claim was taken over; releasing it is no longer ours to do
            ended: list[SessionEvent] = [released]
            if close is not None:
                closing = decisions.close_session(fold(ended, state), close, at, turn=claim.turn)
                ended.append(closing)
            _append(conn, state, heads, ended)

        await self._transaction(release)

    async def close_session(
        self, session_id: SessionId, presented: TokenDigest | None, at: datetime
    ) -> SessionState | Refusal:
        def close(conn: sqlite3.Connection) -> SessionState | Refusal:
            state, heads = _load(conn, session_id)
            decision = decisions.close_by_client(
                state, session_id=session_id, presented=presented, at=at
            )
            if isinstance(decision, Refusal):
                refused = decisions.record_refusal(
                    decision, state=state, presented_id=session_id, at=at
                )
                _insert_refusal(conn, refused, heads if state else None)
                return decision
            return _append(conn, state, heads, decision)

        return await self._transaction(close)

    async def refuse(self, refused: RequestRefused) -> None:
        def refuse(conn: sqlite3.Connection) -> None:
            heads = None
            if refused.session_id is not None:
                state, heads = _load(conn, refused.session_id)
                heads = heads if state else None
            _insert_refusal(conn, refused, heads)

        await self._transaction(refuse)

    async def load(self, session_id: SessionId) -> SessionState | None:
        return await self._transaction(lambda conn: _load(conn, session_id)[0])

    async def _contended(self, session_id: SessionId) -> Contended:
        state = await self.load(session_id)
        return Contended(current=state.version if state else 0)


def _load(
    conn: sqlite3.Connection, session_id: SessionId
) -> tuple[SessionState | None, ChainHeads]:
    row = conn.execute(SELECT_SESSION, (db_id(session_id),)).fetchone()
    if row is None:
        return None, ChainHeads()
    return _state_from(row), ChainHeads.of(row)


def _insert_refusal(
    conn: sqlite3.Connection, refused: RequestRefused, heads: ChainHeads | None
) -> None:
    """A refusal, linked into its session's refusal chain (None: it names no session)."""
    row = event_to_row(refused)
    if heads is None:
        conn.execute(INSERT_EVENT, event_values(row, standalone(row)))
        return
    place, linked, after = heads.refuse(row)
    conn.execute(INSERT_EVENT, event_values(row, linked, place))
    conn.execute(UPDATE_REFUSALS, (after.refusals, after.refusal_head, db_id(row["session_id"])))


def _append(
    conn: sqlite3.Connection,
    state: SessionState | None,
    heads: ChainHeads,
    new_events: Sequence[SessionEvent],
) -> SessionState:
    """Append a session's events, linked into its chain, and write the projection they fold
    into, in one go."""
    values = []
    for event in new_events:
        row = event_to_row(event)
        linked, heads = heads.append(row)
        values.append(event_values(row, linked))
    conn.executemany(INSERT_EVENT, values)
    after = fold(new_events, state)
    row = _state_values(after, heads)
    if state is None:
        conn.execute(INSERT_SESSION, tuple(row[field] for field in SESSION_FIELDS))
        return after
    written = conn.execute(
        UPDATE_SESSION,
        (*(row[field] for field in UPDATED_FIELDS), row["session_id"], state.version),
    )
    if written.rowcount != 1:
        raise Conflict(f"session {state.session_id} moved past version {state.version}")
    return after
