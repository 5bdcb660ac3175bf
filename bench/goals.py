"""The goals of issue 4, each measured from the run's rows: the measured value, the goal,
and whether it was met."""

import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.config import APPEND_WRITERS
from bench.rows import (
    BACKENDS,
    BATON_STORE,
    BUFFERED,
    HTTP_FLOOR,
    NO_BACKEND,
    PEER_EVENTSOURCING,
    POSTGRESQL,
    REPLAY,
    SQL_FLOOR_PG,
    SQL_FLOOR_SQLITE,
    SQLITE,
    SSE,
    WEBSOCKET,
    Row,
)

MB = 1024 * 1024
RSS_LIMIT_MB = 150.0
REPLAY_RSS_LIMIT_MB = 200.0
P50_SLACK_MS = 1.0
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

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Rows = dict[tuple[str, str, int], Row]


def _judge(
    goal: str, measured: float | None, comparator: str, target: float, unit: str, detail: str
) -> Ratio:
    met = measured is not None and COMPARATORS[comparator](measured, target)
    return Ratio(goal, measured, comparator, target, unit, met, detail)


def _rate_ratio(
    goal: str, rows: Rows, top: tuple[str, str, int], bottom: tuple[str, str, int], target: float
) -> Ratio:
    a, b = rows.get(top), rows.get(bottom)
    if a is None or b is None or b.rate <= 0:
        return _judge(goal, None, ">=", target, "x", "missing row")
    detail = f"{a.rate:.0f} {a.unit} / {b.rate:.0f} {b.unit}"
    return _judge(goal, a.rate / b.rate, ">=", target, "x", detail)


def _p50(rows: Rows, key: tuple[str, str, int]) -> float | None:
    row = rows.get(key)
    return row.p50_ms if row else None


def _p50_budget(rows: Rows) -> Ratio:
    goal = "p50 of a turn at c1 on PostgreSQL <= http-floor p50 + sql-floor-pg p50 + 1 ms"
    baton = _p50(rows, (BUFFERED, POSTGRESQL, 1))
    http = _p50(rows, (HTTP_FLOOR, NO_BACKEND, 1))
    sql = _p50(rows, (SQL_FLOOR_PG, POSTGRESQL, 1))
    if baton is None or http is None or sql is None:
        return _judge(goal, None, "<=", 0.0, "ms", "missing row")
    budget = http + sql + P50_SLACK_MS
    detail = f"budget = {http:.2f} + {sql:.2f} + {P50_SLACK_MS:.0f} ms"
    return _judge(goal, baton, "<=", budget, "ms", detail)


def _replay_rss(rows: Rows, backend: str) -> Ratio:
    row = rows.get((REPLAY, backend, 1))
    events = row.count if row else 0
    goal = (
        f"peak RSS of baton replay over {events} events ({backend}) < {REPLAY_RSS_LIMIT_MB:.0f} MB"
    )
    peak = row.extra.get("peak_rss_bytes") if row else None
    if row is None or not peak or not row.extra.get("progress_bar"):
        return _judge(goal, None, "<", REPLAY_RSS_LIMIT_MB, "MB", "missing row or no progress bar")
    detail = f"{row.extra['seconds']} s with a progress bar"
    return _judge(goal, peak / MB, "<", REPLAY_RSS_LIMIT_MB, "MB", detail)


def _peak_rss(rows: Rows, backend: str) -> Ratio:
    goal = f"peak RSS of one server under c64 ({backend}) < {RSS_LIMIT_MB:.0f} MB"
    row = rows.get((BUFFERED, backend, 64))
    peak = row.extra.get("server_peak_rss_bytes") if row else None
    if peak is None:
        return _judge(goal, None, "<", RSS_LIMIT_MB, "MB", "missing row")
    return _judge(goal, peak / MB, "<", RSS_LIMIT_MB, "MB", "VmHWM after the c64 scenario")


def evaluate(measured: list[Row]) -> list[Ratio]:
    rows: Rows = {row.key: row for row in measured}
    ratios = [
        _rate_ratio(
            "PostgreSQL buffered c16 >= 0.5 x sql-floor-pg (pgbench c16)",
            rows,
            (BUFFERED, POSTGRESQL, 16),
            (SQL_FLOOR_PG, POSTGRESQL, 16),
            0.5,
        ),
        _rate_ratio(
            "SQLite buffered c16 >= 0.4 x sql-floor-sqlite",
            rows,
            (BUFFERED, SQLITE, 16),
            (SQL_FLOOR_SQLITE, SQLITE, 1),
            0.4,
        ),
    ]
    for backend in BACKENDS:
        ratios.append(
            _rate_ratio(
                f"{backend} buffered c16 >= 0.25 x http-floor c16",
                rows,
                (BUFFERED, backend, 16),
                (HTTP_FLOOR, NO_BACKEND, 16),
                0.25,
            )
        )
    for backend, target in ((POSTGRESQL, 3.0), (SQLITE, 1.5)):
        ratios.append(
            _rate_ratio(
                f"Baton store appends >= {target:g} x peer-eventsourcing ({backend}, "
                f"{APPEND_WRITERS} writers each)",
                rows,
                (BATON_STORE, backend, APPEND_WRITERS),
                (PEER_EVENTSOURCING, backend, APPEND_WRITERS),
                target,
            )
        )
    ratios.append(_p50_budget(rows))
    for backend in BACKENDS:
        for streamed in (SSE, WEBSOCKET):
            ratios.append(
                _rate_ratio(
                    f"{backend} {streamed} c16 >= 0.8 x buffered c16",
                    rows,
                    (streamed, backend, 16),
                    (BUFFERED, backend, 16),
                    0.8,
                )
            )
    ratios.extend(_peak_rss(rows, backend) for backend in BACKENDS)
    ratios.extend(_replay_rss(rows, backend) for backend in BACKENDS)
    return ratios
