"""Baton's scenarios on one backend, and the http-floor, each against real server processes.

Most scenarios share one `baton serve` process per backend (a server warmed by the previous
scenario is what production looks like). The c64 scenario gets a fresh process of its own,
so the peak RSS read right after it (VmHWM) is that of one server under c64 and nothing else.
"""

from dataclasses import dataclass
from pathlib import Path

from bench import rows
from bench.config import (
    BUFFERED_CONCURRENCY,
    PEAK_RSS_CONCURRENCY,
    RACE_WIDTH,
    STREAM_CONCURRENCY,
    RunConfig,
)
from bench.loadgen import RACE, LoadGenerator, LoadSpec
from bench.progress import progress
from bench.rows import Row
from bench.servers import ServerProcess, baton_server, floor_server

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str  # the row's name
    workload: str  # the load generator's workload
    concurrency: int


ON_SHARED_SERVER = (
    *(
        Scenario(rows.BUFFERED, "buffered", c)
        for c in BUFFERED_CONCURRENCY
        if c != PEAK_RSS_CONCURRENCY
    ),
    # Right after buffered c16, on the same warm server: the pair its goal compares.
    Scenario(rows.BUFFERED_KEYED, "buffered-keyed", STREAM_CONCURRENCY),
    Scenario(rows.SSE, "sse", STREAM_CONCURRENCY),
    Scenario(rows.WEBSOCKET, "websocket", STREAM_CONCURRENCY),
    Scenario(rows.START, "start", STREAM_CONCURRENCY),
    Scenario(rows.RESUME, "resume", STREAM_CONCURRENCY),
    Scenario(rows.IDEMPOTENT_RETRY, "retry", STREAM_CONCURRENCY),
    Scenario(rows.RACE, RACE, RACE_WIDTH),
)
ON_OWN_SERVER = Scenario(rows.BUFFERED, "buffered", PEAK_RSS_CONCURRENCY)
HTTP_FLOOR_CONCURRENCY = (1, STREAM_CONCURRENCY)


def _spec(scenario: Scenario, server: ServerProcess, config: RunConfig) -> LoadSpec:
    return LoadSpec(
        workload=scenario.workload,
        port=server.port,
        server_pid=server.pid,
        concurrency=scenario.concurrency,
        warmup_seconds=config.warmup_seconds,
        measure_seconds=config.measure_seconds,
        rounds=config.race_rounds,
    )


def run_scenario(
    scenario: Scenario,
    backend: str,
    server: ServerProcess,
    loadgen: LoadGenerator,
    config: RunConfig,
) -> Row:
    progress(f"{scenario.name} c{scenario.concurrency} on {backend} ...")
    row = Row.from_result(
        scenario.name,
        backend,
        scenario.concurrency,
        loadgen.run(_spec(scenario, server, config)),
    )
    if scenario.workload == RACE:
        _judge_race(row)
    progress(f"  {row.rate:9.1f} {row.unit}  p50 {row.p50_ms or 0:.2f} ms")
    return row


def _judge_race(row: Row) -> None:
    """Exactly one winner and width-1 409s per round, or the row says so loudly."""
    race = row.extra["race"]
    if not race["all_exact"]:
        row.failed = True
        row.notes.append(
            f"RACE FAILED: {race['rounds'] - race['exact_rounds']} of {race['rounds']} rounds "
            f"broke the single-claim rule; winners per round {race['winners_per_round']}"
        )
        progress(f"  !!! {row.notes[-1]}")
    else:
        row.notes.append(f"1 winner in each of {race['rounds']} rounds")


def run_backend(
    backend: str, database_url: str, loadgen: LoadGenerator, config: RunConfig, log_dir: Path
) -> list[Row]:
    measured = []
    with baton_server(database_url, log_dir, f"baton-{backend}") as server:
        for scenario in ON_SHARED_SERVER:
            measured.append(run_scenario(scenario, backend, server, loadgen, config))
    with baton_server(database_url, log_dir, f"baton-{backend}-c64") as server:
        row = run_scenario(ON_OWN_SERVER, backend, server, loadgen, config)
        peak = server.peak_rss_bytes()  # read before the server stops
        row.extra["server_peak_rss_bytes"] = peak
        row.notes.append(f"server peak RSS {peak / MB:.0f} MB")
        measured.append(row)
    measured.append(run_workers(backend, database_url, loadgen, config, log_dir))
    return measured


def run_workers(
    backend: str, database_url: str, loadgen: LoadGenerator, config: RunConfig, log_dir: Path
) -> Row:
    """Buffered c16 on `baton serve --workers 2`, on a server of its own; or, where baton
    serve refuses that many workers (SQLite), a row that says so."""
    workers = rows.WORKERS_COMPARED
    scenario = Scenario(rows.BUFFERED_WORKERS, "buffered", STREAM_CONCURRENCY)
    server = baton_server(database_url, log_dir, f"baton-{backend}-workers", workers=workers)
    try:
        server.start()
    except RuntimeError:  # it exited at once: a refusal, if it says why
        if server.process is None or server.process.returncode != 2:
            raise
        return _refused_row(scenario, backend, server.log_tail(lines=1))
    try:
        row = run_scenario(scenario, backend, server, loadgen, config)
    finally:
        server.stop()
    row.notes.append(f"baton serve --workers {workers}; buffered c16 is --workers 1")
    return row


def _refused_row(scenario: Scenario, backend: str, refusal: str) -> Row:
    progress(f"  refused: {refusal}")
    empty = {"rate": 0.0, "unit": "turns/s", "p50_ms": None, "p99_ms": None}
    result = {**empty, "refusals": {}, "errors": {}, "loadgen_cpu": None, "count": 0}
    row = Row.from_result(scenario.name, backend, scenario.concurrency, result)
    row.extra["refused"] = refusal
    row.notes.append(f"not served, by design: {refusal.removeprefix('baton: error: ')}")
    return row


def run_http_floor(loadgen: LoadGenerator, config: RunConfig, log_dir: Path) -> list[Row]:
    measured = []
    with floor_server(log_dir) as server:
        for concurrency in HTTP_FLOOR_CONCURRENCY:
            scenario = Scenario(rows.HTTP_FLOOR, "echo", concurrency)
            measured.append(run_scenario(scenario, rows.NO_BACKEND, server, loadgen, config))
    return measured
