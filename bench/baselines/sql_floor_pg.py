"""sql-floor-pg and sql-floor-pg-legacy: the SQL of a turn on PostgreSQL, driven by pgbench.

sql-floor-pg sends exactly what the store sends: its two statements, CLAIM then COMMIT, one
round trip each, in a script generated at run time from infra/postgres_sql.py (bench/
baselines/pgbench_script.py), to sessions Baton's own store seeded. sql-floor-pg-legacy runs
bench/sql/turn_pg_legacy.sql, the ten round trips the former store sent, for comparison only.

Each runs on a fresh database migrated by `baton migrate` (the tables and indexes Baton
writes), with one session per pgbench client, as `pgbench -c C -j 2 -T seconds -n -M
prepared -f ...`. One script run is one turn, so pgbench's tps is turns/s; p50 and p99 come
from its per-transaction log (-l), which has every turn's latency in microseconds.
"""

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.baselines import pgbench_script
from bench.baselines.store_appends import seed_sessions
from bench.databases import PostgresDatabase, migrate
from bench.measure import children_cpu_seconds
from bench.stats import summarize_latency

PGBENCH = shutil.which("pgbench") or "/usr/bin/pgbench"
LEGACY_SCRIPT = Path(__file__).resolve().parent.parent / "sql" / "turn_pg_legacy.sql"
MAX_THREADS = 2

# The ids turn_pg_legacy.sql derives from :client_id; keep the two in step.
SEED_LEGACY_SESSIONS = """
INSERT INTO sessions (session_id, version, turn, status, token_digest, claim_turn, claim_seq,
                      state, last_outcome, created_at, updated_at)
SELECT ('00000000-0000-7000-8000-' || lpad(client::text, 12, '0'))::uuid, 2, 1, 'idle',
       md5(random()::text) || md5(random()::text), NULL, NULL, NULL,
       '{"status": "finished", "output": {"turn": 1}, "turn": 1}', now(), now()
  FROM generate_series(0, %s - 1) AS client
"""


@dataclass(frozen=True, slots=True)
class Floor:
    """A pgbench script ready to run on a prepared database, and how to describe it."""

    script: Path
    define_args: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # kept in the row, for the record


def prepare(database: PostgresDatabase, clients: int, work_dir: Path) -> Floor:
    """Migrate the fresh database, seed one session per pgbench client through Baton's
    store, and write the script generated from the store's SQL."""
    migrate(database.baton_url)
    seed_sessions(database.baton_url, clients)
    script = pgbench_script.build()
    path = work_dir / "turn_pg.sql"
    path.write_text(script.text)
    extra = {"pgbench_script": script.text, "pgbench_defines": script.defines}
    return Floor(path, script.define_args(), extra)


def prepare_legacy(database: PostgresDatabase, clients: int) -> Floor:
    """Migrate the fresh database and seed the sessions turn_pg_legacy.sql expects."""
    migrate(database.baton_url)
    with psycopg.connect(database.plain_url, autocommit=True) as connection:
        connection.execute(SEED_LEGACY_SESSIONS, (clients,))  # type: ignore[arg-type]
    return Floor(LEGACY_SCRIPT, extra={"pgbench_script_file": "bench/sql/turn_pg_legacy.sql"})


def _command(database: PostgresDatabase, floor: Floor, clients: int, seconds: int) -> list[str]:
    return [
        PGBENCH,
        "--host",
        database.host,
        "--port",
        str(database.port),
        "--username",
        database.user,
        "--no-vacuum",  # no pgbench_* tables here
        "--protocol=prepared",  # as asyncpg sends Baton's statements
        f"--client={clients}",
        f"--jobs={min(MAX_THREADS, clients)}",
        f"--time={seconds}",
        f"--file={floor.script}",
        *floor.define_args,
        database.name,
    ]


def _pgbench(database: PostgresDatabase, args: list[str]) -> str:
    env = {"PGPASSWORD": database.password} if database.password else None
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _read_latencies(log_dir: Path) -> list[float]:
    """Per-turn latencies (seconds) from pgbench's logs (one file per thread).

    A log line is `client_id transaction_no time script_no time_epoch time_us`, with `time`
    the latency in microseconds (a word such as `failed` for a failed transaction, which
    pgbench also counts in its summary)."""
    latencies = []
    for path in log_dir.iterdir():
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1_000_000)
    return latencies


def run_floor(
    database: PostgresDatabase, floor: Floor, clients: int, seconds: int, warmup_seconds: int
) -> dict[str, Any]:
    """pgbench at `clients` concurrency on a database prepared for at least that many."""
    if warmup_seconds:
        _pgbench(database, _command(database, floor, clients, warmup_seconds))
    with tempfile.TemporaryDirectory(prefix="pgbench-log-") as log_dir:
        command = _command(database, floor, clients, seconds)
        command[-1:-1] = ["--log", f"--log-prefix={Path(log_dir) / 'turns'}"]
        cpu_before, began = children_cpu_seconds(), time.perf_counter()
        output = _pgbench(database, command)
        wall = time.perf_counter() - began
        pgbench_cpu = children_cpu_seconds() - cpu_before
        latencies = _read_latencies(Path(log_dir))
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", output, re.M)
    failures = re.search(r"^number of failed transactions: (\d+)", output, re.M)
    failed = int(failures.group(1)) if failures else 0
    return {
        "rate": float(tps.group(1)) if tps else 0.0,
        "unit": "turns/s",
        "count": len(latencies),
        **summarize_latency(latencies),
        "refusals": {},
        "errors": {"failed-transactions": failed} if failed else {},
        # pgbench is this row's load generator; its share includes connecting and exiting.
        "loadgen_cpu": pgbench_cpu / wall,
        "extra": floor.extra,
    }
