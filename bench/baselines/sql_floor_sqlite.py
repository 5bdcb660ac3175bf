"""sql-floor-sqlite: the raw SQL of a turn through the standard sqlite3 module, one process.

The same two transactions as bench/sql/turn_pg.sql, as Baton runs them on SQLite: WAL,
Baton's synchronous level (infra.settings.Settings().sqlite_synchronous, FULL by default),
BEGIN IMMEDIATE, on a database migrated by `baton migrate`, values stored the way
SQLAlchemy stores Baton's (uuid as 32 hex characters, JSON as text, naive UTC datetimes).
Sessions are taken round-robin; one turn is one claim transaction plus one commit
transaction, timed together.
"""

import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.databases import migrate, sqlite_url
from bench.stats import summarize_latency
from infra.settings import Settings

SESSIONS = 16

LOCK_SESSION = "SELECT session_id, version, turn, token_digest FROM sessions WHERE session_id = ?"
INSERT_EVENT = (
    "INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
CLAIM_SESSION = (
    "UPDATE sessions SET version = ?, turn = ?, status = 'in-flight', token_digest = ?, "
    "claim_turn = ?, claim_seq = ?, state = state, last_outcome = last_outcome, "
    "created_at = created_at, updated_at = ? WHERE session_id = ? AND version = ?"
)
COMMIT_SESSION = (
    "UPDATE sessions SET version = ?, turn = ?, status = 'idle', token_digest = ?, "
    "claim_turn = NULL, claim_seq = NULL, state = state, last_outcome = ?, "
    "created_at = created_at, updated_at = ? WHERE session_id = ? AND version = ?"
)
SEED_SESSION = (
    "INSERT INTO sessions (session_id, version, turn, status, token_digest, claim_turn, "
    "claim_seq, state, last_outcome, created_at, updated_at) "
    "VALUES (?, 2, 1, 'idle', ?, NULL, NULL, 'null', ?, ?, ?)"
)
CLAIMED_DATA = json.dumps({"input": {"message": "x"}}, separators=(",", ":"))
SEALED = "P0Qh1qXn4S7k2mD9vLw8eYb3TzR6cUoJfHaNgKxEpVs"  # a sealed token's length


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _digest() -> str:
    return os.urandom(32).hex()


def connect(path: Path) -> sqlite3.Connection:
    """A connection set up as infra/database.py sets up Baton's."""
    settings = Settings.from_env()  # BATON_* as the servers under test read them
    connection = sqlite3.connect(path, isolation_level=None)  # we say BEGIN ourselves
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
    connection.execute(f"PRAGMA busy_timeout={settings.sqlite_busy_timeout_ms}")
    return connection


def _seed(connection: sqlite3.Connection) -> list[str]:
    ids = [os.urandom(16).hex() for _ in range(SESSIONS)]
    outcome = json.dumps({"status": "finished", "output": {"turn": 1}, "turn": 1})
    connection.execute("BEGIN IMMEDIATE")
    for session_id in ids:
        now = _now()
        connection.execute(SEED_SESSION, (session_id, _digest(), outcome, now, now))
    connection.execute("COMMIT")
    return ids


def _turn(connection: sqlite3.Connection, session_id: str) -> None:
    # The claim: validate and mark in flight.
    connection.execute("BEGIN IMMEDIATE")
    _, version, turn, digest = connection.execute(LOCK_SESSION, (session_id,)).fetchone()
    now = _now()
    connection.execute(
        INSERT_EVENT, (session_id, version + 1, "claimed", turn + 1, None, None, CLAIMED_DATA, now)
    )
    connection.execute(
        CLAIM_SESSION, (version + 1, turn, digest, turn + 1, version + 1, now, session_id, version)
    )
    connection.execute("COMMIT")
    # The commit: consume the current token, issue the next, store the outcome.
    connection.execute("BEGIN IMMEDIATE")
    _, version, turn, digest = connection.execute(LOCK_SESSION, (session_id,)).fetchone()
    issued, now = _digest(), _now()
    output = {"turn": turn + 1}
    data = json.dumps({"status": "finished", "output": output, "sealedToken": SEALED})
    outcome = json.dumps({"status": "finished", "output": output, "turn": turn + 1})
    connection.execute(
        INSERT_EVENT, (session_id, version + 1, "committed", turn + 1, digest, issued, data, now)
    )
    connection.execute(
        COMMIT_SESSION, (version + 1, turn + 1, issued, outcome, now, session_id, version)
    )
    connection.execute("COMMIT")


def run_floor(path: Path, warmup_seconds: float, measure_seconds: float) -> dict[str, Any]:
    migrate(sqlite_url(path))
    connection = connect(path)
    try:
        ids = _seed(connection)
        clock = time.perf_counter
        turns = 0
        warm_until = clock() + warmup_seconds
        while clock() < warm_until:
            _turn(connection, ids[turns % SESSIONS])
            turns += 1
        latencies: list[float] = []
        cpu_before, start = time.process_time(), clock()
        while (began := clock()) < start + measure_seconds:
            _turn(connection, ids[turns % SESSIONS])
            turns += 1
            latencies.append(clock() - began)
        wall = clock() - start
        cpu = time.process_time() - cpu_before
    finally:
        connection.close()
    return {
        "rate": len(latencies) / wall,
        "unit": "turns/s",
        "count": len(latencies),
        **summarize_latency(latencies),
        "refusals": {},
        "errors": {},
        # The process that issues the SQL is the whole load here; its share is its CPU.
        "loadgen_cpu": cpu / wall,
    }
