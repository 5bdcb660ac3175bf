"""sql-floor-sqlite: the SQL of a turn on SQLite as Baton's store runs it, at Baton's
concurrency, through Baton's own group-commit writer.

The connection is opened by the store's own `connect` (WAL, Baton's synchronous level from
infra.settings.Settings, busy_timeout) and handed to infra.sqlite_writer.SqliteWriter, which
commits the transactions waiting at the same moment together, as it does in `baton serve`.
Each client is an asyncio task owning one session seeded by Baton's store; a turn is two
writer jobs, a claim and a commit, each made of the store's statements (SELECT_SESSION,
INSERT_EVENT, UPDATE_SESSION from infra/sqlite_store.py): read the row, append the event,
write the projection guarded by the version read. As the store does, the row is read only
when the client has not just written it or another connection has committed since (one
`PRAGMA data_version` per group, infra/sqlite_recent.py). The event's values are laid out by the
store's own `event_values`, and its chain link is computed with infra.chain.link, since
PostgreSQL's floor computes it in SQL.

What it leaves out is Baton's own work above the SQL: HTTP, the domain's decision and fold,
tokens, and the canonical JSON of each event (its payload is a constant of the same size).
"""

import asyncio
import os
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from baton.domain.events import Lease, TurnClaimed, TurnCommitted
from baton.domain.identifiers import SessionId, digest_token, mint_token, seal_token
from baton.domain.outcomes import Finished
from baton.domain.recovery import Forget
from baton.domain.state import SessionStatus, outcome_summary
from baton.infra.chain import link, row_payload
from baton.infra.codec import event_to_row
from baton.infra.settings import Settings
from baton.infra.sqlite_recent import OutsideCommits
from baton.infra.sqlite_store import (
    FORGET,
    INSERT_EVENT,
    KEEP_SEAL,
    SELECT_SESSION,
    UPDATE_SESSION,
    loaded_row,
)
from baton.infra.sqlite_values import db_id, event_values, seal_values
from baton.infra.sqlite_values import session_id_of as _session_id_of
from baton.infra.sqlite_values import time_text as db_time
from baton.infra.sqlite_writer import SqliteWriter, connect
from baton.infra.tables import UPDATED_FIELDS
from bench.baselines.pgbench_script import TYPICAL_TURN
from bench.baselines.store_appends import seed_sessions
from bench.databases import migrate, sqlite_url
from bench.measure import COMMITTED, Tally, Window, clock

SESSIONS = 16  # one per client at the highest concurrency
LEASE = timedelta(seconds=30)  # domain.driver.TurnServices.lease_seconds
RECOVERY_WINDOW = timedelta(seconds=Settings().recovery_window)
OWNER = f"bench:{os.getpid()}:{secrets.token_hex(3)}"  # the shape of api/app.py's owner


@dataclass(frozen=True, slots=True)
class _Event:
    """An event of a representative turn: its event_to_row dict and chain payload."""

    row: dict[str, Any]
    payload: bytes


def _claimed(session_id: str, at: datetime) -> _Event:
    claimed = TurnClaimed(
        session_id=SessionId(session_id),
        seq=0,
        turn=0,
        input={"message": "x"},  # the load generator's input
        lease=Lease(OWNER, at + LEASE),
        at=at,
    )
    row = event_to_row(claimed)
    return _Event(row, row_payload(row))


def _committed(session_id: str, turn: int, at: datetime) -> tuple[_Event, str]:
    """The bench handler's outcome with a sealed token; and the projection's last_outcome."""
    token = mint_token(secrets.token_bytes)
    committed = TurnCommitted(
        session_id=SessionId(session_id),
        seq=0,
        turn=turn,
        consumed=digest_token(token),
        issued=digest_token(token),
        outcome=Finished({"turn": turn}),
        at=at,
    )
    row = event_to_row(committed)
    return _Event(row, row_payload(row)), msgspec.json.encode(outcome_summary(committed)).decode()


def _read(conn: sqlite3.Connection, session: str) -> dict[str, Any]:
    found = conn.execute(SELECT_SESSION, (session,)).fetchone()
    if found is None:
        raise RuntimeError(f"sql-floor-sqlite: session {session} is gone")
    return loaded_row(found)


def _append(conn: sqlite3.Connection, event: dict[str, Any], linked: str) -> None:
    # executemany of one row, as the store's _append sends a turn's single event.
    conn.executemany(INSERT_EVENT, [event_values({**event, "hash": linked})])


def _write(conn: sqlite3.Connection, before: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """UPDATE_SESSION with the row as read, changed, guarded by the version read."""
    after = {**before, **changes}
    values = (*(after[field] for field in UPDATED_FIELDS), before["session_id"], before["version"])
    if conn.execute(UPDATE_SESSION, values).rowcount != 1:
        raise RuntimeError(f"sql-floor-sqlite: session {before['session_id']} moved")
    return after


class _Kept:
    """The rows as the clients last wrote them, read again only after another connection
    committed: what the store keeps instead of reading back (infra/sqlite_recent.py), with
    the same `PRAGMA data_version` once per group."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self._outside = OutsideCommits()

    def began(self, conn: sqlite3.Connection) -> None:
        if self._outside.committed(conn):
            self.rows.clear()

    def row(self, conn: sqlite3.Connection, session: str) -> dict[str, Any]:
        kept = self.rows.get(session)
        return kept if kept is not None else _read(conn, session)


class _Client:
    """One session, turned over and over: a claim job, then a commit job, on the writer."""

    def __init__(self, writer: SqliteWriter, kept: _Kept, session_id: str) -> None:
        self._writer = writer
        self._kept = kept
        self._session = db_id(session_id)
        self.turns = 0  # warm-up included
        now = datetime.now(UTC)
        self._claimed = _claimed(session_id, now)
        self._committed, self._outcome = _committed(session_id, TYPICAL_TURN, now)
        self._sealed = seal_token(mint_token(secrets.token_bytes), mint_token(secrets.token_bytes))

    def _claim(self, conn: sqlite3.Connection) -> None:
        row = self._kept.row(conn, self._session)
        # The claim spends the last turn's token: its seal goes (infra.planning, Forget).
        conn.execute(FORGET[Forget.NEXT_TOKENS], (self._session,))
        seq, turn, at = row["version"] + 1, row["turn"] + 1, datetime.now(UTC)
        linked = link(row["head_hash"], seq, turn, self._claimed.payload)
        event = {**self._claimed.row, "seq": seq, "turn": turn, "recorded_at": at}
        _append(conn, event, linked)
        self._kept.rows[self._session] = _write(
            conn,
            row,
            version=seq,
            status=SessionStatus.IN_FLIGHT.value,
            claim_turn=turn,
            claim_seq=seq,
            claim_owner=OWNER,
            lease_until=db_time(at + LEASE),
            updated_at=db_time(at),
            head_hash=linked,
        )

    def _commit(self, conn: sqlite3.Connection) -> None:
        row = self._kept.row(conn, self._session)
        seq, turn, at = row["version"] + 1, row["claim_turn"], datetime.now(UTC)
        issued = os.urandom(32).hex()  # a fresh digest: the issued column is unique
        linked = link(row["head_hash"], seq, turn, self._committed.payload)
        event = {
            **self._committed.row,
            "seq": seq,
            "turn": turn,
            "consumed": row["token_digest"],
            "issued": issued,
            "recorded_at": at,
        }
        _append(conn, event, linked)
        self._kept.rows[self._session] = _write(
            conn,
            row,
            version=seq,
            turn=turn,
            status=SessionStatus.IDLE.value,
            token_digest=issued,
            claim_turn=None,
            claim_seq=None,
            claim_owner=None,
            lease_until=None,
            last_outcome=self._outcome,
            updated_at=db_time(at),
            head_hash=linked,
        )
        # The issued token, sealed under the consumed one, for recovery (PROTOCOL 6.2).
        seal = {
            "lookup": row["token_digest"],
            "session_id": _session_id_of(self._session),
            "turn": turn,
            "sealed": self._sealed,
            "key_digest": None,
            "fingerprint": None,
            "expires_at": at + RECOVERY_WINDOW,
        }
        conn.execute(KEEP_SEAL, seal_values(seal))

    async def turn(self) -> None:
        await self._writer.run(self._claim)
        await self._writer.run(self._commit)
        self.turns += 1


async def _drive(client: _Client, window: Window, tally: Tally) -> None:
    while clock() < window.end:
        began = clock()
        await client.turn()
        tally.add(COMMITTED, began, clock(), window)


async def _measure(
    writer: SqliteWriter, kept: _Kept, sessions: list[str], window: Window
) -> dict[str, Any]:
    clients = [_Client(writer, kept, session_id) for session_id in sessions]
    tally = Tally()
    window.open()
    await asyncio.gather(*(_drive(client, window, tally) for client in clients))
    window.close()
    result = tally.summary(window, "turns/s")
    transactions = 2 * sum(client.turns for client in clients)
    # How much the group commit grouped: transactions per COMMIT (one fsync each).
    result["extra"] = {"transactions_per_commit": round(transactions / max(writer.commits, 1), 2)}
    return result


async def _run(
    path: Path, sessions: list[str], warmup_seconds: float, measure_seconds: float
) -> dict[str, Any]:
    settings = Settings.from_env()  # BATON_* as the servers under test read them
    conn = connect(
        str(path),
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    kept = _Kept()
    writer = SqliteWriter(conn, began=kept.began, undone=kept.rows.clear)
    try:
        return await _measure(writer, kept, sessions, Window(warmup_seconds, measure_seconds))
    finally:
        await writer.stop()


def prepare(path: Path) -> list[str]:
    """Migrate a fresh database and seed SESSIONS sessions through Baton's store."""
    url = sqlite_url(path)
    migrate(url)
    return seed_sessions(url, SESSIONS)


def run_floor(
    path: Path, sessions: list[str], clients: int, warmup_seconds: float, measure_seconds: float
) -> dict[str, Any]:
    """`clients` concurrent clients, each on a session of its own, for a warm-up and then
    the measured window. Their CPU share is this process's: the clients and the writer."""
    return asyncio.run(_run(path, sessions[:clients], warmup_seconds, measure_seconds))
