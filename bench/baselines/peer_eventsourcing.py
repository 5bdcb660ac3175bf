"""peer-eventsourcing: the `eventsourcing` library (9.5) appending events one save at a time.

An aggregate whose every save records exactly one new event, saved in a loop; timed like
Baton's own store (bench.baselines.store_appends): the same number of events, after the same
unmeasured warm-up, one transaction per event, on the same PostgreSQL server (a fresh
database of its own) and on SQLite with Baton's durability.

Durability, made equal to Baton's:
- SQLite: eventsourcing sets `PRAGMA journal_mode=WAL` itself (as Baton does) but never sets
  `synchronous`, so it runs at the library's compile-time default. `BatonDurabilitySQLite`
  below is eventsourcing's own SQLiteFactory, named by PERSISTENCE_MODULE like any factory,
  that runs `PRAGMA synchronous=<level>` on every connection it opens. The level comes from
  the environment (SQLITE_SYNCHRONOUS), set from Settings.from_env().sqlite_synchronous,
  the level Baton's servers run at (FULL unless BATON_SQLITE_SYNCHRONOUS says otherwise).
  The pragmas actually in force are read back from a pooled connection and reported.
- PostgreSQL: both use the server's settings (synchronous_commit as configured); neither
  changes them per session.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteConnection, SQLiteFactory
from eventsourcing.utils import EnvType

from baton.infra.settings import Settings
from bench.databases import PostgresDatabase

SYNCHRONOUS_ENV = "SQLITE_SYNCHRONOUS"
SQLITE_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class BatonDurabilitySQLite(SQLiteFactory):
    """eventsourcing's SQLite persistence, every connection at Baton's synchronous level."""

    def __init__(self, env: EnvType | None) -> None:
        super().__init__(env)
        level = self.env.get(SYNCHRONOUS_ENV, "FULL").upper()
        if level not in SQLITE_SYNCHRONOUS_NAMES.values():
            raise ValueError(f"{SYNCHRONOUS_ENV} must be one of OFF, NORMAL, FULL, EXTRA")
        pool = self.datastore.pool
        open_connection: Callable[[], SQLiteConnection] = pool._create_connection

        def open_with_baton_durability() -> SQLiteConnection:
            connection = open_connection()
            cursor = connection.cursor()
            cursor.execute(f"PRAGMA synchronous={level}")
            return connection

        # The pool has no hook for per-connection set-up; this instance attribute is one.
        pool._create_connection = open_with_baton_durability  # type: ignore[method-assign]


class Counter(Aggregate):
    """Every `increment` is one new event; a save after it records exactly that event."""

    def __init__(self) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


def sqlite_env(path: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": f"{__name__}:{BatonDurabilitySQLite.__name__}",
        "SQLITE_DBNAME": str(path),
        SYNCHRONOUS_ENV: Settings.from_env().sqlite_synchronous,
    }


def postgres_env(database: PostgresDatabase) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": database.name,
        "POSTGRES_HOST": database.host,
        "POSTGRES_PORT": str(database.port),
        "POSTGRES_USER": database.user,
        "POSTGRES_PASSWORD": database.password,
    }


def _sqlite_pragmas(app: Application) -> dict[str, str]:
    """journal_mode and synchronous as a connection of the application's pool has them."""
    datastore = cast(Any, app.factory).datastore
    with datastore.get_connection(commit=False) as connection:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode")
        journal_mode = str(cursor.fetchone()[0])
        cursor.execute("PRAGMA synchronous")
        synchronous = SQLITE_SYNCHRONOUS_NAMES.get(cursor.fetchone()[0], "?")
    return {"journal_mode": journal_mode, "synchronous": synchronous}


def _save_one_by_one(app: Application, counter: Counter, events: int) -> None:
    for _ in range(events):
        counter.increment()
        app.save(counter)


def run_appends(
    env: dict[str, str], events: int, warmup_events: int, writers: int = 1
) -> dict[str, Any]:
    """`writers` threads, each saving its own aggregate one event at a time (the library is
    synchronous, so threads are how it takes concurrent writers)."""
    app: Application = Application(env=env)
    try:
        counters = [Counter() for _ in range(writers)]
        for counter in counters:
            app.save(counter)  # the aggregate's creation: one event, not measured
        per_writer = events // writers
        events = per_writer * writers
        with ThreadPoolExecutor(max_workers=writers) as pool:
            list(pool.map(lambda c: _save_one_by_one(app, c, warmup_events // writers), counters))
            began = time.perf_counter()
            list(pool.map(lambda c: _save_one_by_one(app, c, per_writer), counters))
            elapsed = time.perf_counter() - began
        extra: dict[str, Any] = {"events": events, "seconds": elapsed}
        if isinstance(app.factory, SQLiteFactory):
            extra["sqlite"] = _sqlite_pragmas(app)
    finally:
        app.close()
    return {
        "rate": events / elapsed,
        "unit": "events/s",
        "count": events,
        "p50_ms": None,
        "p99_ms": None,
        "refusals": {},
        "errors": {},
        "loadgen_cpu": None,
        "extra": extra,
    }
