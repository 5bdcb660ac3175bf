"""Group commit on SQLite: concurrent transactions share a COMMIT, yet each stands alone."""

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.infra.sqlite_writer import SqliteWriter


def connect(path: Path, timeout: float = 5.0) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SqliteWriter]:
    setup = connect(tmp_path / "w.db")
    setup.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    setup.close()
    running = SqliteWriter(connect(tmp_path / "w.db"))
    yield running
    await running.stop()


def insert(key: int, value: str) -> object:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?, ?)", (key, value)).rowcount


def rows(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as reader:  # another connection sees only committed data
        return list(reader.execute("SELECT k, v FROM t ORDER BY k"))


async def test_concurrent_transactions_share_commits(writer: SqliteWriter, tmp_path: Path) -> None:
    results = await asyncio.gather(*(writer.run(insert(k, f"v{k}")) for k in range(50)))
    assert results == [1] * 50
    assert rows(tmp_path / "w.db") == [(k, f"v{k}") for k in range(50)]
    assert writer.commits < 50  # fifty transactions, fewer fsyncs


async def test_a_failing_transaction_rolls_back_alone(writer: SqliteWriter, tmp_path: Path) -> None:
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (100, 'partial')")
        conn.execute("INSERT INTO t VALUES (101, 'v1')")  # v1 is taken below: unique fails

    outcomes = await asyncio.gather(
        writer.run(insert(1, "v1")),
        writer.run(half_then_fail),
        writer.run(insert(2, "v2")),
        return_exceptions=True,
    )
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert outcomes[2] == 1
    assert rows(tmp_path / "w.db") == [(1, "v1"), (2, "v2")]  # nothing of the failed one


async def test_when_the_group_cannot_commit_every_caller_hears_it(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    connect(path).execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    writer = SqliteWriter(connect(path, timeout=0.1))
    holder = connect(path)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        outcomes = await asyncio.gather(
            *(writer.run(insert(k, str(k))) for k in range(3)), return_exceptions=True
        )
    finally:
        holder.execute("ROLLBACK")
        await writer.stop()
    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes)
    assert rows(path) == []


async def test_a_lone_failing_transaction_leaves_nothing_and_the_next_one_commits(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    # Alone in its group, a transaction runs without a savepoint of its own: its failure
    # rolls back the whole transaction, and the writer goes on.
    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (100, 'partial')")
        raise RuntimeError("the handler's own failure")

    with pytest.raises(RuntimeError, match="own failure"):
        await writer.run(half_then_fail)
    committed = writer.commits
    assert await writer.run(insert(1, "v1")) == 1
    assert rows(tmp_path / "w.db") == [(1, "v1")]
    assert writer.commits == committed + 1  # a rollback is no commit


async def test_each_group_is_announced_and_one_whose_commit_fails_is_reported_undone(
    tmp_path: Path,
) -> None:
    """What the store keeps of its writes (infra/sqlite_recent.py) hangs on these two calls:
    `began` once the group holds the lock, `undone` when its COMMIT took everything back."""
    setup = connect(tmp_path / "u.db")
    setup.execute("CREATE TABLE parent (k INTEGER PRIMARY KEY)")
    setup.execute(
        "CREATE TABLE child (k INTEGER REFERENCES parent (k) DEFERRABLE INITIALLY DEFERRED)"
    )
    setup.close()
    conn = connect(tmp_path / "u.db")
    conn.execute("PRAGMA foreign_keys = ON")  # checked at COMMIT: a deferred key
    calls: list[str] = []
    running = SqliteWriter(
        conn,
        began=lambda began: calls.append(f"began {began.in_transaction}"),
        undone=lambda: calls.append("undone"),
    )
    try:
        assert await running.run(lambda c: c.execute("INSERT INTO parent VALUES (1)").rowcount)
        assert calls == ["began True"]
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await running.run(lambda c: c.execute("INSERT INTO child VALUES (2)").rowcount)
        assert calls == ["began True", "began True", "undone"]
    finally:
        await running.stop()
