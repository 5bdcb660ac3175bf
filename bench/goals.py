"""The goals of issue 4 (and of issue 11: the cost of recovery; of issue 13: a flood of junk
continues), each measured from the run's rows: the measured value, the goal, whether it was
met, and the keys of the rows it was computed from (so a verdict can be traced to its
numbers). tests/test_bench_goals.py pins every comparator, threshold and row. A goal not met
is a finding, not a failed run.
"""

import math
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench.config import APPEND_WRITERS
from bench.rows import (
    BACKENDS,
    BATON_STORE,
    BUFFERED,
    BUFFERED_KEYED,
    BUFFERED_WORKERS,
    FLOOD,
    HTTP_FLOOR,
    IDEMPOTENT_RETRY,
    NO_BACKEND,
    PEER_EVENTSOURCING,
    POSTGRESQL,
    REPLAY,
    RESUME,
    ROUTE_FRAMEWORK,
    ROUTE_RAW,
    SQL_FLOOR_PG,
    SQL_FLOOR_PG_LEGACY,
    SQL_FLOOR_SQLITE,
    SQLITE,
    SSE,
    WEBSOCKET,
    WORKERS_COMPARED,
    Row,
    RowKey,
)

MB = 1024 * 1024
RSS_LIMIT_MB = 150.0
REPLAY_RSS_LIMIT_MB = 200.0
# Issue 15 tightened issue 4's slack of 1 ms to half a millisecond.
P50_SLACK_MS = 0.5
COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True, slots=True)
class Ratio:
    goal: str
    measured: float | None  # None: a row it needs is missing
    comparator: str
    target: float
    unit: str  # "x" for ratios, "ms", "MB"
    met: bool
    detail: str
    rows: tuple[RowKey, ...] = ()  # what it was computed from; a ratio's numerator first
    informational: bool = False  # shown for comparison; not one of the goals

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Rows = dict[RowKey, Row]

# Rates compared at c16, the reference point of issue 4's goals.
C16 = 16
PG_FLOOR_TARGET = 0.5
# Issue 15's milestone on the way to issue 4's 0.5, judged beside it.
PG_FLOOR_MILESTONE = 0.35
# Issue 15 raised issue 4's 0.4 for SQLite (and measures both at the same concurrency).
SQLITE_FLOOR_TARGET = 0.5
HTTP_FLOOR_TARGET = 0.25
# Issue 15: a turn costs the server at most three echo requests' CPU (both at c16).
CPU_PER_TURN_TARGET = 3.0
APPENDS_TARGETS = ((POSTGRESQL, 3.0), (SQLITE, 1.5))
STREAMED_TARGET = 0.9  # issue 15 (issue 4 asked for 0.8)
# Issue 11: an Idempotency-Key on every turn costs buffered turns at most 10%, and a resumed
# stream or an idempotent retry costs no more than a turn (issue 15 judges them too).
KEYED_TARGET = 0.9
RECOVERY_TARGET = 1.0
# Issue 13: a flood of junk continues at a session leaves its owner's p50 within 2x of its p50
# alone, and stores no more refusals than the server's refusal limit allows.
FLOOD_P50_TARGET = 2.0


def _judge(
    goal: str,
    measured: float | None,
    comparator: str,
    target: float,
    unit: str,
    detail: str,
    keys: tuple[RowKey, ...] = (),
) -> Ratio:
    met = measured is not None and COMPARATORS[comparator](measured, target)
    return Ratio(goal, measured, comparator, target, unit, met, detail, keys)


def _label(key: RowKey) -> str:
    name, backend, concurrency = key
    return f"{name} {backend} c{concurrency}"


def _rate_ratio(goal: str, rows: Rows, top: RowKey, bottom: RowKey, target: float) -> Ratio:
    """rows[top].rate / rows[bottom].rate >= target."""
    a, b = rows.get(top), rows.get(bottom)
    if a is None or b is None or b.rate <= 0:
        return _judge(goal, None, ">=", target, "x", "missing row", (top, bottom))
    top_unit = "" if a.unit == b.unit else f" {a.unit}"
    detail = f"{_label(top)} {a.rate:.0f}{top_unit} / {_label(bottom)} {b.rate:.0f} {b.unit}"
    return _judge(goal, a.rate / b.rate, ">=", target, "x", detail, (top, bottom))


def _p50(rows: Rows, key: RowKey) -> float | None:
    row = rows.get(key)
    return row.p50_ms if row else None


def _p50_budget(rows: Rows) -> Ratio:
    goal = (
        "p50 of a turn at c1 on PostgreSQL <= http-floor p50 + sql-floor-pg p50 + "
        f"{P50_SLACK_MS:g} ms"
    )
    keys = ((BUFFERED, POSTGRESQL, 1), (HTTP_FLOOR, NO_BACKEND, 1), (SQL_FLOOR_PG, POSTGRESQL, 1))
    baton, http, sql = (_p50(rows, key) for key in keys)
    if baton is None or http is None or sql is None:
        return _judge(goal, None, "<=", 0.0, "ms", "missing row", keys)
    budget = http + sql + P50_SLACK_MS
    detail = f"budget = {http:.2f} + {sql:.2f} + {P50_SLACK_MS:g} ms"
    return _judge(goal, baton, "<=", budget, "ms", detail, keys)


def _replay_rss(rows: Rows, backend: str) -> Ratio:
    key = (REPLAY, backend, 1)
    row = rows.get(key)
    events = row.count if row else 0
    goal = (
        f"peak RSS of baton replay over {events} events ({backend}) < {REPLAY_RSS_LIMIT_MB:.0f} MB"
    )
    peak = row.extra.get("peak_rss_bytes") if row else None
    if row is None or not peak or not row.extra.get("progress_bar"):
        missing = "missing row or no progress bar"
        return _judge(goal, None, "<", REPLAY_RSS_LIMIT_MB, "MB", missing, (key,))
    detail = f"{row.extra['seconds']} s with a progress bar"
    return _judge(goal, peak / MB, "<", REPLAY_RSS_LIMIT_MB, "MB", detail, (key,))


def _peak_rss(rows: Rows, backend: str) -> Ratio:
    goal = f"peak RSS of one server under c64 ({backend}) < {RSS_LIMIT_MB:.0f} MB"
    key = (BUFFERED, backend, 64)
    row = rows.get(key)
    peak = row.extra.get("server_peak_rss_bytes") if row else None
    if peak is None:
        return _judge(goal, None, "<", RSS_LIMIT_MB, "MB", "missing row", (key,))
    detail = "VmHWM after the c64 scenario"
    return _judge(goal, peak / MB, "<", RSS_LIMIT_MB, "MB", detail, (key,))


def _floor_ratios(rows: Rows) -> list[Ratio]:
    """Baton against the SQL floors, both at c16: the same concurrency on both sides."""
    pg, sqlite = (BUFFERED, POSTGRESQL, C16), (BUFFERED, SQLITE, C16)
    legacy = _rate_ratio(
        f"PostgreSQL buffered c16 >= {PG_FLOOR_TARGET:g} x sql-floor-pg-legacy c16 (comparison)",
        rows,
        pg,
        (SQL_FLOOR_PG_LEGACY, POSTGRESQL, C16),
        PG_FLOOR_TARGET,
    )
    return [
        _rate_ratio(
            f"PostgreSQL buffered c16 >= {PG_FLOOR_TARGET:g} x sql-floor-pg c16",
            rows,
            pg,
            (SQL_FLOOR_PG, POSTGRESQL, C16),
            PG_FLOOR_TARGET,
        ),
        _rate_ratio(
            f"PostgreSQL buffered c16 >= {PG_FLOOR_MILESTONE:g} x sql-floor-pg c16 (issue 15)",
            rows,
            pg,
            (SQL_FLOOR_PG, POSTGRESQL, C16),
            PG_FLOOR_MILESTONE,
        ),
        replace(legacy, informational=True),
        _rate_ratio(
            f"SQLite buffered c16 >= {SQLITE_FLOOR_TARGET:g} x sql-floor-sqlite c16",
            rows,
            sqlite,
            (SQL_FLOOR_SQLITE, SQLITE, C16),
            SQLITE_FLOOR_TARGET,
        ),
    ]


def _http_ratios(rows: Rows) -> list[Ratio]:
    return [
        _rate_ratio(
            f"{backend} buffered c16 >= {HTTP_FLOOR_TARGET:g} x http-floor c16",
            rows,
            (BUFFERED, backend, C16),
            (HTTP_FLOOR, NO_BACKEND, C16),
            HTTP_FLOOR_TARGET,
        )
        for backend in BACKENDS
    ]


def _cpu_ratios(rows: Rows) -> list[Ratio]:
    """Server CPU per buffered turn over server CPU per echo request, both at c16."""
    echo = (HTTP_FLOOR, NO_BACKEND, C16)
    judged = []
    for backend in BACKENDS:
        turn = (BUFFERED, backend, C16)
        goal = f"{backend}: server CPU per turn <= {CPU_PER_TURN_TARGET:g} x per echo request"
        per_turn, per_echo = (_cpu_per_request(rows, key) for key in (turn, echo))
        if per_turn is None or per_echo is None or per_echo <= 0:
            judged.append(_judge(goal, None, "<=", CPU_PER_TURN_TARGET, "x", "missing row"))
            continue
        detail = f"{per_turn:.3f} ms CPU a turn / {per_echo:.3f} ms CPU an echo request"
        ratio = per_turn / per_echo
        judged.append(_judge(goal, ratio, "<=", CPU_PER_TURN_TARGET, "x", detail, (turn, echo)))
    return judged


def _cpu_per_request(rows: Rows, key: RowKey) -> float | None:
    row = rows.get(key)
    value = row.extra.get("server_cpu_ms_per_request") if row else None
    return float(value) if value is not None else None


def _append_ratios(rows: Rows) -> list[Ratio]:
    return [
        _rate_ratio(
            f"Baton store appends >= {target:g} x peer-eventsourcing ({backend}, "
            f"{APPEND_WRITERS} writers each)",
            rows,
            (BATON_STORE, backend, APPEND_WRITERS),
            (PEER_EVENTSOURCING, backend, APPEND_WRITERS),
            target,
        )
        for backend, target in APPENDS_TARGETS
    ]


def _streamed_ratios(rows: Rows) -> list[Ratio]:
    return [
        _rate_ratio(
            f"{backend} {streamed} c16 >= {STREAMED_TARGET:g} x buffered c16",
            rows,
            (streamed, backend, C16),
            (BUFFERED, backend, C16),
            STREAMED_TARGET,
        )
        for backend in BACKENDS
        for streamed in (SSE, WEBSOCKET)
    ]


def _recovery_ratios(rows: Rows) -> list[Ratio]:
    """Issue 11, against buffered c16 on the same backend (the same server, the same run)."""
    keyed = [
        _rate_ratio(
            f"{backend} buffered-keyed c16 >= {KEYED_TARGET:g} x buffered c16",
            rows,
            (BUFFERED_KEYED, backend, C16),
            (BUFFERED, backend, C16),
            KEYED_TARGET,
        )
        for backend in BACKENDS
    ]
    recovered = [
        _rate_ratio(
            f"{backend} {name} c16 >= {RECOVERY_TARGET:g} x buffered c16",
            rows,
            (name, backend, C16),
            (BUFFERED, backend, C16),
            RECOVERY_TARGET,
        )
        for backend in BACKENDS
        for name in (RESUME, IDEMPOTENT_RETRY)
    ]
    return [*keyed, *recovered]


# Issue 15 item 1: keep the framework unless a raw ASGI route saves a large share of a turn.
ROUTE_SHARE_LIMIT = 0.15


def _route_overhead(rows: Rows) -> Ratio:
    """What Litestar's route costs a turn beyond a raw ASGI route, as a share of the server's
    CPU per buffered turn on PostgreSQL at c16 (for comparison: it decides whether the turn
    endpoints keep the framework)."""
    keys = (
        (ROUTE_FRAMEWORK, NO_BACKEND, 1),
        (ROUTE_RAW, NO_BACKEND, 1),
        (BUFFERED, POSTGRESQL, C16),
    )
    goal = f"Litestar's route beyond raw ASGI < {ROUTE_SHARE_LIMIT:g} of a turn's CPU (comparison)"
    framework, raw = (
        rows[key].extra.get("cpu_us_per_request") if key in rows else None for key in keys[:2]
    )
    per_turn_ms = _cpu_per_request(rows, keys[2])
    if framework is None or raw is None or not per_turn_ms:
        return replace(
            _judge(goal, None, "<", ROUTE_SHARE_LIMIT, "x", "missing row", keys), informational=True
        )
    extra_us = framework - raw
    detail = (
        f"{framework:.1f} us - {raw:.1f} us = {extra_us:.1f} us a request, "
        f"of {per_turn_ms * 1000:.0f} us server CPU a turn"
    )
    share = extra_us / (per_turn_ms * 1000)
    return replace(
        _judge(goal, share, "<", ROUTE_SHARE_LIMIT, "x", detail, keys), informational=True
    )


def _workers_ratios(rows: Rows) -> list[Ratio]:
    """Issue 14 item 6, issue 15 item 3: what a second worker process adds, for comparison
    (it depends on the cores the load generator and the database leave free)."""
    ratios = []
    for backend in BACKENDS:
        top, bottom = (BUFFERED_WORKERS, backend, C16), (BUFFERED, backend, C16)
        goal = f"{backend} buffered c16: {WORKERS_COMPARED} workers >= 1 x 1 worker (comparison)"
        refused = rows[top].extra.get("refused") if top in rows else None
        if refused:
            detail = f"not served: baton serve refuses --workers {WORKERS_COMPARED} here"
            ratio = _judge(goal, None, ">=", 1.0, "x", detail, (top, bottom))
        else:
            ratio = _rate_ratio(goal, rows, top, bottom, 1.0)
        ratios.append(replace(ratio, informational=True))
    return ratios


def refusals_allowed(
    limit: int, window_seconds: float, flood_seconds: float, connections: int
) -> tuple[int, int]:
    """The refused events a flood of `flood_seconds` from one client may leave stored under a
    limit of `limit` per `window_seconds`, and the windows it may span. A window starts at
    the client's first refusal after the last window ended, so the flood spans at most
    floor(flood_seconds / window_seconds) + 1 of them; in each, the limit, plus the
    requests already past the check when the client reached it: one per connection."""
    windows = math.floor(flood_seconds / window_seconds) + 1
    return windows * (limit + connections), windows


def _flood_p50(rows: Rows, backend: str) -> Ratio:
    goal = f"{backend} flood: owner p50 flooded <= {FLOOD_P50_TARGET:g} x unflooded"
    key = (FLOOD, backend, 1)
    row = rows.get(key)
    alone = row.extra.get("unflooded_p50_ms") if row else None
    if row is None or row.p50_ms is None or not alone:
        missing = "missing row, or no owner turns alone or flooded"
        return _judge(goal, None, "<=", FLOOD_P50_TARGET, "x", missing, (key,))
    detail = f"{row.p50_ms:.2f} ms while flooded / {alone:.2f} ms alone, same session"
    return _judge(goal, row.p50_ms / alone, "<=", FLOOD_P50_TARGET, "x", detail, (key,))


FLOOD_FACTS = (
    "refusals_stored",
    "refusal_limit",
    "refusal_window_seconds",
    "flood_seconds",
    "flood_concurrency",
    "flood_requests",
    "flood_answered",
)


def _flood_refusals(rows: Rows, backend: str) -> Ratio:
    goal = f"{backend} flood: refusals stored <= what the limit allows"
    key = (FLOOD, backend, 1)
    row = rows.get(key)
    facts = row.extra if row else {}
    if any(facts.get(fact) is None for fact in FLOOD_FACTS):
        return _judge(goal, None, "<=", 0.0, "rows", "missing row", (key,))
    if facts["flood_answered"] < facts["flood_requests"]:
        short = f"the flood got {facts['flood_answered']} of {facts['flood_requests']} answers"
        return _judge(goal, None, "<=", 0.0, "rows", short, (key,))
    limit, window = facts["refusal_limit"], facts["refusal_window_seconds"]
    allowed, windows = refusals_allowed(
        limit, window, facts["flood_seconds"], facts["flood_concurrency"]
    )
    detail = (
        f"{windows} window(s) of {window:g} s x (limit {limit} + "
        f"{facts['flood_concurrency']} in flight), {facts['flood_requests']} junk continues"
    )
    return _judge(
        goal, float(facts["refusals_stored"]), "<=", float(allowed), "rows", detail, (key,)
    )


def evaluate(measured: list[Row]) -> list[Ratio]:
    rows: Rows = {row.key: row for row in measured}
    return [
        *_floor_ratios(rows),
        *_http_ratios(rows),
        *_cpu_ratios(rows),
        *_append_ratios(rows),
        _p50_budget(rows),
        *_streamed_ratios(rows),
        *_recovery_ratios(rows),
        *_workers_ratios(rows),
        _route_overhead(rows),
        *(_peak_rss(rows, backend) for backend in BACKENDS),
        *(_replay_rss(rows, backend) for backend in BACKENDS),
        *(_flood_p50(rows, backend) for backend in BACKENDS),
        *(_flood_refusals(rows, backend) for backend in BACKENDS),
    ]
