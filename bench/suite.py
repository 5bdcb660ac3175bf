"""The whole run, in order: the baselines, Baton on each backend, the flood on each backend,
the store appends, and (in a full run) the profile. Every database is fresh and dropped (or
deleted) at the end."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import rows
from bench.baselines import (
    peer_eventsourcing,
    replay,
    sql_floor_pg,
    sql_floor_sqlite,
    store_appends,
)
from bench.baselines.sql_floor_pg import Floor
from bench.config import APPEND_WRITERS, STREAM_CONCURRENCY, RunConfig
from bench.databases import (
    PostgresDatabase,
    fresh_postgres,
    fresh_sqlite_path,
    migrate,
    sqlite_url,
)
from bench.flood import run_flood
from bench.loadgen import LoadGenerator
from bench.profiling import Profiling, flame_graphs, profile_postgres_c16
from bench.progress import progress
from bench.route_overhead import measure_routes
from bench.rows import Row
from bench.scenarios import run_backend, run_http_floor
from bench.servers import BATON

# The SQL floors run alone (c1: the p50 budget) and at Baton's reference point (c16: the ratios).
FLOOR_CONCURRENCY = (1, STREAM_CONCURRENCY)


@dataclass
class Suite:
    config: RunConfig
    loadgen: LoadGenerator
    work_dir: Path  # temporary: SQLite files, pyinstrument's raw session
    results_dir: Path  # where profiles are written, and the servers' logs (logs/)
    stamp: str  # the run's name (bench/report.py run_stamp): its flame graphs carry it
    rows: list[Row] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    flames: dict[str, str] = field(default_factory=dict)  # "backend workload" -> its file

    @property
    def log_dir(self) -> Path:
        """Server logs outlive the run, to read when a row reports errors."""
        return self.results_dir / "logs"

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        progress(f"== {name}")
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(time.perf_counter() - began, 2)

    def run(self) -> list[Row]:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("http-floor", self.http_floor),
            ("route overhead", self.route_overhead),
            ("sql-floor-pg", self.sql_floor_pg),
            ("sql-floor-pg-legacy", self.sql_floor_pg_legacy),
            ("sql-floor-sqlite", self.sql_floor_sqlite),
            ("baton on sqlite", self.baton_sqlite),
            ("baton on postgresql", self.baton_postgresql),
            ("flood: sqlite", lambda: self.flood(rows.SQLITE)),
            ("flood: postgresql", lambda: self.flood(rows.POSTGRESQL)),
            ("store appends: sqlite", lambda: self.appends(rows.SQLITE)),
            ("store appends: postgresql", lambda: self.appends(rows.POSTGRESQL)),
            ("replay: sqlite", lambda: self.replay(rows.SQLITE)),
            ("replay: postgresql", lambda: self.replay(rows.POSTGRESQL)),
        ]
        for name, step in steps:
            with self._phase(name):
                step()
        return self.rows

    def http_floor(self) -> None:
        self.rows += run_http_floor(self.loadgen, self.config, self.log_dir)

    def route_overhead(self) -> None:
        progress(f"route overhead: {self.config.route_requests} requests per route, in-process")
        for row in measure_routes(self.config.route_requests):
            self._add(row)

    def sql_floor_pg(self) -> None:
        """The store's own statements, generated from infra/postgres_sql.py."""
        with fresh_postgres("sqlfloor") as database:
            floor = sql_floor_pg.prepare(database, max(FLOOR_CONCURRENCY), self.work_dir)
            note = "the store's CLAIM + COMMIT: 2 round trips"
            self._pgbench(database, floor, rows.SQL_FLOOR_PG, note)

    def sql_floor_pg_legacy(self) -> None:
        """The former store's ten round trips, for comparison only."""
        with fresh_postgres("sqlfloorlegacy") as database:
            floor = sql_floor_pg.prepare_legacy(database, max(FLOOR_CONCURRENCY))
            note = "for comparison only: the former store's 10 round trips"
            self._pgbench(database, floor, rows.SQL_FLOOR_PG_LEGACY, note)

    def _pgbench(self, database: PostgresDatabase, floor: Floor, name: str, note: str) -> None:
        for clients in FLOOR_CONCURRENCY:
            progress(f"pgbench {name} c{clients} ...")
            result = sql_floor_pg.run_floor(
                database,
                floor,
                clients,
                self.config.pgbench_seconds,
                self.config.pgbench_warmup_seconds,
            )
            row = Row.from_result(name, rows.POSTGRESQL, clients, result)
            row.notes.append(note)
            self._add(row)

    def sql_floor_sqlite(self) -> None:
        """The store's statements through Baton's group-commit writer, at Baton's
        concurrency (c16, the ratio's) and alone (c1)."""
        path = fresh_sqlite_path(self.work_dir, "sqlfloor")
        sessions = sql_floor_sqlite.prepare(path)
        for clients in FLOOR_CONCURRENCY:
            progress(f"sql-floor-sqlite c{clients} ...")
            result = sql_floor_sqlite.run_floor(
                path, sessions, clients, self.config.warmup_seconds, self.config.measure_seconds
            )
            row = Row.from_result(rows.SQL_FLOOR_SQLITE, rows.SQLITE, clients, result)
            grouped = row.extra["transactions_per_commit"]
            row.notes.append(f"store SQL via SqliteWriter; {grouped} transactions per commit")
            self._add(row)

    def baton_sqlite(self) -> None:
        url = sqlite_url(fresh_sqlite_path(self.work_dir, "baton"))
        self.rows += run_backend(rows.SQLITE, url, self.loadgen, self.config, self.log_dir)
        if self.config.profile:
            self.flames.update(flame_graphs(self._profiling(), rows.SQLITE, url))

    def baton_postgresql(self) -> None:
        with fresh_postgres("baton") as database:
            url = database.baton_url
            self.rows += run_backend(rows.POSTGRESQL, url, self.loadgen, self.config, self.log_dir)
            if self.config.profile:
                progress("profiling: postgresql buffered c16 under pyinstrument ...")
                self.profile = profile_postgres_c16(self._profiling(), url)
                self.flames.update(flame_graphs(self._profiling(), rows.POSTGRESQL, url))
                self.profile["flame_graphs"] = self.flames

    def _profiling(self) -> Profiling:
        return Profiling(self.loadgen, self.config, self.work_dir, self.results_dir, self.stamp)

    def flood(self, backend: str) -> None:
        """Issue 13: junk continues at one session while its owner runs turns, on a server
        of its own (with a refusal limit) on a fresh database."""
        if backend == rows.SQLITE:
            url = sqlite_url(fresh_sqlite_path(self.work_dir, "flood"))
            row = run_flood(backend, url, self.loadgen, self.config, self.log_dir, self.work_dir)
        else:
            with fresh_postgres("flood") as database:
                row = run_flood(
                    backend,
                    database.baton_url,
                    self.loadgen,
                    self.config,
                    self.log_dir,
                    self.work_dir,
                )
        self._add(row)

    def appends(self, backend: str) -> None:
        """Both stores, one writer each and then APPEND_WRITERS each."""
        for writers in (1, APPEND_WRITERS):
            self._peer_appends(backend, writers)
            self._own_appends(backend, writers)

    def _peer_appends(self, backend: str, writers: int) -> None:
        events, warmup = self.config.append_events, self.config.append_warmup_events
        progress(f"peer-eventsourcing on {backend}, {writers} writer(s): {events} events ...")
        if backend == rows.SQLITE:
            env = peer_eventsourcing.sqlite_env(fresh_sqlite_path(self.work_dir, "eventsourcing"))
            peer = peer_eventsourcing.run_appends(env, events, warmup, writers)
        else:
            with fresh_postgres("eventsourcing") as database:
                env = peer_eventsourcing.postgres_env(database)
                peer = peer_eventsourcing.run_appends(env, events, warmup, writers)
        peer_row = Row.from_result(rows.PEER_EVENTSOURCING, backend, writers, peer)
        if "sqlite" in peer_row.extra:
            pragmas = peer_row.extra["sqlite"]
            peer_row.notes.append(
                f"journal_mode={pragmas['journal_mode']} synchronous={pragmas['synchronous']}"
            )
        peer_row.notes.append("one event per save" + ("" if writers == 1 else ", threads"))
        self._add(peer_row)

    def _own_appends(self, backend: str, writers: int) -> None:
        events, warmup = self.config.append_events, self.config.append_warmup_events
        progress(f"Baton's store on {backend}, {writers} writer(s): {events} events ...")
        if backend == rows.SQLITE:
            url = sqlite_url(fresh_sqlite_path(self.work_dir, "store"))
            migrate(url)
            own = store_appends.run_appends(url, events, warmup, writers)
        else:
            with fresh_postgres("store") as database:
                migrate(database.baton_url)
                own = store_appends.run_appends(database.baton_url, events, warmup, writers)
        own_row = Row.from_result(rows.BATON_STORE, backend, writers, own)
        own_row.notes.append("in-process, claim+commit" + ("" if writers == 1 else ", sessions"))
        self._add(own_row)

    def replay(self, backend: str) -> None:
        events = self.config.replay_events
        progress(f"baton replay on {backend}: {events} events ...")
        if backend == rows.SQLITE:
            url = sqlite_url(fresh_sqlite_path(self.work_dir, "replay"))
            migrate(url)
            result = replay.run_replay(url, events, BATON)
        else:
            with fresh_postgres("replay") as database:
                migrate(database.baton_url)
                result = replay.run_replay(database.baton_url, events, BATON)
        row = Row.from_result(rows.REPLAY, backend, 1, result)
        extra = row.extra
        row.notes.append(f"{extra['seconds']} s, peak RSS {extra['peak_rss_bytes'] / 2**20:.0f} MB")
        self._add(row)

    def _add(self, row: Row) -> None:
        progress(f"  {row.name} {row.backend} c{row.concurrency}: {row.rate:9.1f} {row.unit}")
        self.rows.append(row)
