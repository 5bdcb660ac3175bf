"""One row of the results: one measurement (a scenario on a backend, or a baseline)."""

from dataclasses import asdict, dataclass, field
from typing import Any

# Row names: Baton's scenarios, then the baselines.
BUFFERED = "buffered"
BUFFERED_KEYED = "buffered-keyed"  # buffered turns, each with a fresh Idempotency-Key
SSE = "sse"
WEBSOCKET = "websocket"
RACE = "race"
START = "start"
# Recovery (PROTOCOL section 6), on an idle session whose last turn committed: a resumed
# stream of that turn's events, and an idempotent retry of that turn, answered from the store.
RESUME = "resume"
IDEMPOTENT_RETRY = "idempotent-retry"
# Issue 13: one owner's c1 turns while a flood of junk continues hits its session, on a
# server with a per-client refusal limit (bench/flood.py).
FLOOD = "flood"
# Issue 14 item 6 / issue 15 item 3: buffered c16 on a `baton serve --workers 2`, next to
# buffered c16 on one worker (every other row). SQLite refuses more than one worker: its row
# records the refusal (rate 0, extra["refused"]) instead of a measurement.
BUFFERED_WORKERS = "buffered-2-workers"
WORKERS_COMPARED = 2
HTTP_FLOOR = "http-floor"
# Issue 15 item 1: a turn-shaped request through Litestar's route and through a raw ASGI
# route, in-process (bench/route_overhead.py).
ROUTE_FRAMEWORK = "route-litestar"
ROUTE_RAW = "route-raw-asgi"
SQL_FLOOR_PG = "sql-floor-pg"  # the PostgreSQL store's own statements, driven by pgbench
# The ten-round-trip transactions sql-floor-pg used to run, kept for comparison only.
SQL_FLOOR_PG_LEGACY = "sql-floor-pg-legacy"
SQL_FLOOR_SQLITE = "sql-floor-sqlite"
PEER_EVENTSOURCING = "peer-eventsourcing"
BATON_STORE = "baton-store"  # Baton's store appending in-process, next to the peer
REPLAY = "replay"  # `baton replay` rebuilding the projection from a fixture of events

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
BACKENDS = (SQLITE, POSTGRESQL)
NO_BACKEND = "-"  # the http-floor touches no database


RowKey = tuple[str, str, int]  # (name, backend, concurrency): a row's identity in a run


@dataclass
class Row:
    name: str
    backend: str
    concurrency: int
    rate: float
    unit: str
    p50_ms: float | None
    p99_ms: float | None
    refusals: dict[str, int]
    errors: dict[str, int]
    loadgen_cpu: float | None  # CPU seconds per wall second of whatever generated the load
    count: int  # measured requests (turns, events)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed: bool = False  # a correctness check in this row failed (the race)

    @property
    def key(self) -> RowKey:
        return self.name, self.backend, self.concurrency

    @classmethod
    def from_result(
        cls, name: str, backend: str, concurrency: int, result: dict[str, Any]
    ) -> "Row":
        extra = dict(result.get("extra", {}))
        if "race" in result:
            extra["race"] = result["race"]
        server_cpu = result.get("server_cpu_seconds")
        if server_cpu is not None and result["count"]:
            # The server's CPU per measured request: what a turn costs the process.
            extra["server_cpu_ms_per_request"] = round(1000 * server_cpu / result["count"], 4)
        return cls(
            name=name,
            backend=backend,
            concurrency=concurrency,
            rate=float(result["rate"]),
            unit=str(result["unit"]),
            p50_ms=result["p50_ms"],
            p99_ms=result["p99_ms"],
            refusals=dict(result["refusals"]),
            errors=dict(result["errors"]),
            loadgen_cpu=result["loadgen_cpu"],
            count=int(result["count"]),
            extra=extra,
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
