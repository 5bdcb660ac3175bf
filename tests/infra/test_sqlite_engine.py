"""SQLite is set up for durability and for writers that never read a version twice."""

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from baton.infra.database import create_engine, writing
from baton.infra.settings import Settings
from baton.infra.sqlite_writer import connect as store_connect
from baton.infra.stores import open_store

SYNCHRONOUS_LEVELS = {1: "NORMAL", 2: "FULL"}


async def pragmas(url: str, **settings: object) -> dict[str, object]:
    engine = create_engine(Settings(database_url=url, **settings))  # type: ignore[arg-type]
    try:
        async with engine.connect() as conn:
            return {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout")
            }
    finally:
        await engine.dispose()


async def test_wal_and_full_synchronous_by_default(tmp_path: Path) -> None:
    found = await pragmas(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    assert found["journal_mode"] == "wal"
    assert SYNCHRONOUS_LEVELS[found["synchronous"]] == "FULL"  # type: ignore[index]
    assert found["busy_timeout"] == 5000


async def test_normal_synchronous_only_when_asked(tmp_path: Path) -> None:
    found = await pragmas(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", sqlite_synchronous="NORMAL")
    assert SYNCHRONOUS_LEVELS[found["synchronous"]] == "NORMAL"  # type: ignore[index]


async def test_a_writing_transaction_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    """A second writer waits at BEGIN, before it can read a version it would then reuse;
    readers do not wait at all."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    engine = create_engine(Settings(database_url=url, sqlite_busy_timeout_ms=200))
    try:
        async with writing(engine).begin() as first:
            await first.execute(text("SELECT 1"))
            with pytest.raises(Exception, match="database is locked"):
                async with writing(engine).begin() as second:
                    await second.execute(text("SELECT 1"))
            async with engine.connect() as reader:
                assert (await reader.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


@pytest.mark.parametrize("level", ["FULL", "NORMAL"])
async def test_every_connection_the_store_writes_through_is_wal_at_the_set_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    """Read back from the connections the store itself opens (not from another engine's):
    WAL, and the synchronous level asked for, or an acknowledged turn could be lost."""
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)
        opened.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", recording_connect)
    # A file no other engine has touched: WAL is a property of the file once set.
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    async with open_store(Settings(database_url=url, sqlite_synchronous=level)):
        assert opened, "the store opened no connection of its own"
        for connection in opened:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
            assert (mode, SYNCHRONOUS_LEVELS[synchronous]) == ("wal", level)


async def test_the_writer_keeps_its_journals_in_memory(tmp_path: Path) -> None:
    """A group's savepoints journal the pages each transaction changes; past 64 KiB SQLite
    spills that journal to a temporary file, which cost an open, writes and an unlink per
    group (strace: one every few turns at c16, about a third of the server's system time)."""
    conn = store_connect(str(tmp_path / "w.db"), synchronous="FULL", busy_timeout_ms=1000)
    try:
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # 2: MEMORY
    finally:
        conn.close()
