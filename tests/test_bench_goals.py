"""The benchmark's verdicts (bench/goals.py) on synthetic rows: no servers, no timing.

Every goal is pinned from the outside, by values written here rather than read from
bench/goals.py: which rows it compares (every row gets a rate of its own, so the measured
value names its numerator and denominator), its threshold and comparator (met exactly at the
threshold where the goal says >= or <=, and just past it on the good side; not met just past
it on the bad side). A flipped comparator, a moved threshold, a swapped ratio or a wrong row
(the c1 floor for the c16 Baton, the legacy floor for the current one) fails a test here.
"""

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.goals import Ratio, evaluate
from bench.profiling import FLAME_SCENARIOS, flame_graph_path
from bench.report import dated_path, render_table, run_stamp
from bench.rows import Row, RowKey
from tests.test_bench import BASELINE_ROWS, BATON_ROWS

MB = 1024 * 1024
EVERY_ROW = sorted(BATON_ROWS | BASELINE_ROWS)  # the rows of a real run


@dataclass(frozen=True)
class RateGoal:
    goal: str  # the start of the goal's text, as the table prints it
    numerator: RowKey
    denominator: RowKey
    target: float


PG_C16 = ("buffered", "postgresql", 16)
SQLITE_C16 = ("buffered", "sqlite", 16)
RATE_GOALS = [
    RateGoal(
        "PostgreSQL buffered c16 >= 0.5 x sql-floor-pg c16",
        PG_C16,
        ("sql-floor-pg", "postgresql", 16),
        0.5,
    ),
    RateGoal(
        "PostgreSQL buffered c16 >= 0.35 x sql-floor-pg c16 (issue 15)",
        PG_C16,
        ("sql-floor-pg", "postgresql", 16),
        0.35,
    ),
    RateGoal(
        "SQLite buffered c16 >= 0.5 x sql-floor-sqlite c16",
        SQLITE_C16,
        ("sql-floor-sqlite", "sqlite", 16),
        0.5,
    ),
    *(
        RateGoal(
            f"{backend} buffered c16 >= 0.25 x http-floor c16",
            ("buffered", backend, 16),
            ("http-floor", "-", 16),
            0.25,
        )
        for backend in ("sqlite", "postgresql")
    ),
    *(
        RateGoal(
            f"Baton store appends >= {label} x peer-eventsourcing ({backend}, 16 writers each)",
            ("baton-store", backend, 16),
            ("peer-eventsourcing", backend, 16),
            target,
        )
        for backend, label, target in (("postgresql", "3", 3.0), ("sqlite", "1.5", 1.5))
    ),
    *(
        RateGoal(
            f"{backend} {streamed} c16 >= 0.9 x buffered c16",
            (streamed, backend, 16),
            ("buffered", backend, 16),
            0.9,
        )
        for backend in ("sqlite", "postgresql")
        for streamed in ("sse", "websocket")
    ),
    # Issue 11: an Idempotency-Key on every turn costs at most 10%; a resumed stream and an
    # idempotent retry cost no more than a turn. Each against buffered c16 of its own backend.
    *(
        RateGoal(
            f"{backend} buffered-keyed c16 >= 0.9 x buffered c16",
            ("buffered-keyed", backend, 16),
            ("buffered", backend, 16),
            0.9,
        )
        for backend in ("sqlite", "postgresql")
    ),
    *(
        RateGoal(
            f"{backend} {recovery} c16 >= 1 x buffered c16",
            (recovery, backend, 16),
            ("buffered", backend, 16),
            1.0,
        )
        for backend in ("sqlite", "postgresql")
        for recovery in ("resume", "idempotent-retry")
    ),
]
# Shown next to the goals, for comparison with the figures judged before the floor was fixed.
LEGACY = RateGoal(
    "PostgreSQL buffered c16 >= 0.5 x sql-floor-pg-legacy c16",
    PG_C16,
    ("sql-floor-pg-legacy", "postgresql", 16),
    0.5,
)
# Issue 14 item 6: buffered c16 on two worker processes against one, for comparison.
WORKERS = [
    RateGoal(
        f"{backend} buffered c16: 2 workers >= 1 x 1 worker (comparison)",
        ("buffered-2-workers", backend, 16),
        ("buffered", backend, 16),
        1.0,
    )
    for backend in ("sqlite", "postgresql")
]
COMPARISONS = [LEGACY, *WORKERS]
P50_GOAL = "p50 of a turn at c1 on PostgreSQL <= http-floor p50 + sql-floor-pg p50 + 0.5 ms"
PEAK_RSS_GOAL = "peak RSS of one server under c64 ({backend}) < 150 MB"
REPLAY_GOAL = "peak RSS of baton replay over"
FLOOD_P50_GOAL = "{backend} flood: owner p50 flooded <= 2 x unflooded"
FLOOD_STORED_GOAL = "{backend} flood: refusals stored <= what the limit allows"
CPU_GOAL = "{backend}: server CPU per turn <= 3 x per echo request"
ROUTE_GOAL = "Litestar's route beyond raw ASGI < 0.15 of a turn's CPU (comparison)"
BACKENDS = ("sqlite", "postgresql")


def _row(key: RowKey, rate: float, **extra: Any) -> Row:
    name, backend, concurrency = key
    return Row(
        name=name,
        backend=backend,
        concurrency=concurrency,
        rate=rate,
        unit="turns/s",
        p50_ms=1.0,
        p99_ms=2.0,
        refusals={},
        errors={},
        loadgen_cpu=None,
        count=1000,
        extra=dict(extra),
    )


def _distinct_rates() -> dict[RowKey, float]:
    """A rate of its own for every row: 1000, 1001, ... (no two ratios coincide)."""
    return {key: 1000.0 + index for index, key in enumerate(EVERY_ROW)}


def _rows(rates: dict[RowKey, float] | None = None, **overrides: Row) -> list[Row]:
    rates = rates or dict.fromkeys(EVERY_ROW, 1000.0)
    rows = {key: _row(key, rate) for key, rate in rates.items()}
    rows.update({row.key: row for row in overrides.values()})
    return list(rows.values())


def _find(ratios: Iterable[Ratio], goal: str) -> Ratio:
    found = [ratio for ratio in ratios if ratio.goal.startswith(goal)]
    assert len(found) == 1, f"{len(found)} ratios for {goal!r}"
    return found[0]


def _with_numerator(goal: RateGoal, factor: float) -> Ratio:
    """The goal judged with its denominator at 1000 and its numerator at target x factor."""
    rates = dict.fromkeys(EVERY_ROW, 1000.0)
    rates[goal.numerator] = round(goal.target * 1000 * factor, 6)
    return _find(evaluate(_rows(rates)), goal.goal)


RATE_IDS = [goal.goal for goal in [*RATE_GOALS, *COMPARISONS]]


def test_every_ratio_of_a_run_is_pinned_here() -> None:
    """A goal added to bench/goals.py without a test here fails this one."""
    ratios = evaluate(_rows())
    pinned = [goal.goal for goal in [*RATE_GOALS, *COMPARISONS]]
    pinned += [P50_GOAL, REPLAY_GOAL, REPLAY_GOAL, ROUTE_GOAL]
    pinned += [PEAK_RSS_GOAL.format(backend=backend) for backend in BACKENDS]
    pinned += [
        goal.format(backend=backend)
        for goal in (FLOOD_P50_GOAL, FLOOD_STORED_GOAL, CPU_GOAL)
        for backend in BACKENDS
    ]
    assert len(ratios) == len(pinned)
    for ratio in ratios:
        assert any(ratio.goal.startswith(goal) for goal in pinned), ratio.goal


@pytest.mark.parametrize("goal", [*RATE_GOALS, *COMPARISONS], ids=RATE_IDS)
def test_a_rate_ratio_divides_the_intended_rows(goal: RateGoal) -> None:
    rates = _distinct_rates()
    ratio = _find(evaluate(_rows(rates)), goal.goal)
    assert ratio.measured == rates[goal.numerator] / rates[goal.denominator]
    assert ratio.rows == (goal.numerator, goal.denominator)  # what the JSON traces it to
    assert (ratio.comparator, ratio.target, ratio.unit) == (">=", goal.target, "x")


@pytest.mark.parametrize("goal", [*RATE_GOALS, *COMPARISONS], ids=RATE_IDS)
@pytest.mark.parametrize("factor", [1.0, 1.01])
def test_a_rate_goal_is_met_at_and_just_above_its_threshold(goal: RateGoal, factor: float) -> None:
    assert _with_numerator(goal, factor).met is True


@pytest.mark.parametrize("goal", [*RATE_GOALS, *COMPARISONS], ids=RATE_IDS)
def test_a_rate_goal_is_not_met_just_below_its_threshold(goal: RateGoal) -> None:
    assert _with_numerator(goal, 0.99).met is False


@pytest.mark.parametrize("goal", [*RATE_GOALS, *COMPARISONS], ids=RATE_IDS)
def test_a_rate_goal_without_its_denominator_is_missing_and_not_met(goal: RateGoal) -> None:
    rows = [row for row in _rows() if row.key != goal.denominator]
    ratio = _find(evaluate(rows), goal.goal)
    assert ratio.measured is None
    assert ratio.met is False


def test_the_floors_compare_c16_with_c16_and_not_with_c1() -> None:
    """The c1 floors are far slower per turn than the c16 ones would be: were either goal
    to divide by one, this rate would flip its verdict."""
    rates = dict.fromkeys(EVERY_ROW, 1000.0)
    rates[("sql-floor-pg", "postgresql", 1)] = 1.0
    rates[("sql-floor-sqlite", "sqlite", 1)] = 1.0
    rates[("sql-floor-pg-legacy", "postgresql", 16)] = 1.0
    rates[PG_C16] = rates[SQLITE_C16] = 300.0  # 0.3 x the c16 floors: below both goals
    ratios = evaluate(_rows(rates))
    assert _find(ratios, RATE_GOALS[0].goal).met is False
    assert _find(ratios, RATE_GOALS[1].goal).met is False


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_recovery_goals_compare_with_buffered_c16_on_their_own_backend(backend: str) -> None:
    """Recovery slower than a turn on this backend, buffered slower still on the other one:
    a goal dividing by the other backend's buffered c16 (or by c1, or c64) would be met."""
    other = next(name for name in BACKENDS if name != backend)
    rates = dict.fromkeys(EVERY_ROW, 1000.0)
    rates[("buffered", backend, 16)] = 2000.0
    rates[("buffered", other, 16)] = 1.0
    rates[("buffered", backend, 1)] = rates[("buffered", backend, 64)] = 1.0
    ratios = evaluate(_rows(rates))
    for name, target in (("buffered-keyed", "0.9"), ("resume", "1"), ("idempotent-retry", "1")):
        ratio = _find(ratios, f"{backend} {name} c16 >= {target} x buffered c16")
        assert (ratio.measured, ratio.met) == (0.5, False)


def test_only_the_comparisons_are_informational() -> None:
    ratios = evaluate(_rows())
    informational = [ratio.goal for ratio in ratios if ratio.informational]
    compared = [comparison.goal for comparison in COMPARISONS] + [ROUTE_GOAL]
    assert len(informational) == len(compared)
    for goal, comparison in zip(informational, compared, strict=True):
        assert goal.startswith(comparison)


@pytest.mark.parametrize("goal", WORKERS, ids=[goal.goal for goal in WORKERS])
def test_a_refused_workers_row_says_so_instead_of_a_ratio(goal: RateGoal) -> None:
    """SQLite's `baton serve --workers 2` refuses to start: its row has no rate to divide,
    and the ratio says why rather than reading 0x."""
    refused = _row(goal.numerator, 0.0, refused="baton: error: --workers 2 on SQLite: ...")
    ratio = _find(evaluate(_rows(refused=refused)), goal.goal)
    assert (ratio.measured, ratio.met, ratio.informational) == (None, False, True)
    assert ratio.detail == "not served: baton serve refuses --workers 2 here"
    assert ratio.rows == (goal.numerator, goal.denominator)


# ------------------------------------------------------------------ the p50 budget

P50_KEYS = {
    "baton": ("buffered", "postgresql", 1),
    "http": ("http-floor", "-", 1),
    "sql": ("sql-floor-pg", "postgresql", 1),
}


def _p50_rows(baton_ms: float) -> list[Row]:
    """http-floor 0.5 ms, sql-floor-pg 1.25 ms at c1: a budget of 2.25 ms. Every other row
    has a p50 of its own, so a budget built from another row comes out different."""
    rows = _rows()
    for index, row in enumerate(rows):
        row.p50_ms = 10.0 + index
    p50s = {P50_KEYS["baton"]: baton_ms, P50_KEYS["http"]: 0.5, P50_KEYS["sql"]: 1.25}
    for row in rows:
        row.p50_ms = p50s.get(row.key, row.p50_ms)
    return rows


def test_the_p50_budget_adds_the_c1_floors_and_half_a_millisecond() -> None:
    ratio = _find(evaluate(_p50_rows(2.0)), P50_GOAL)
    assert ratio.measured == 2.0
    assert ratio.target == 0.5 + 1.25 + 0.5
    assert ratio.comparator == "<="
    assert ratio.rows == (P50_KEYS["baton"], P50_KEYS["http"], P50_KEYS["sql"])


@pytest.mark.parametrize(("baton_ms", "met"), [(2.25, True), (2.2, True), (2.3, False)])
def test_the_p50_budget_is_met_up_to_and_including_it(baton_ms: float, met: bool) -> None:
    assert _find(evaluate(_p50_rows(baton_ms)), P50_GOAL).met is met


def test_the_p50_budget_without_the_sql_floor_is_missing() -> None:
    rows = [row for row in _p50_rows(2.0) if row.key != P50_KEYS["sql"]]
    ratio = _find(evaluate(rows), P50_GOAL)
    assert (ratio.measured, ratio.met) == (None, False)


# ------------------------------------------------------------------ CPU


def _cpu(backend: str, turn_ms: float | None, echo_ms: float | None) -> Ratio:
    turn, echo = ("buffered", backend, 16), ("http-floor", "-", 16)
    rows = _rows(
        turn=_row(
            turn, 1000.0, **({} if turn_ms is None else {"server_cpu_ms_per_request": turn_ms})
        ),
        echo=_row(
            echo, 1000.0, **({} if echo_ms is None else {"server_cpu_ms_per_request": echo_ms})
        ),
    )
    return _find(evaluate(rows), CPU_GOAL.format(backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("turn_ms", "met"), [(0.59, True), (0.6, True), (0.61, False)])
def test_a_turn_may_cost_the_server_three_echo_requests_of_cpu(
    backend: str, turn_ms: float, met: bool
) -> None:
    ratio = _cpu(backend, turn_ms, 0.2)
    assert ratio.measured == pytest.approx(turn_ms / 0.2)
    assert ratio.met is met
    assert ratio.rows == (("buffered", backend, 16), ("http-floor", "-", 16))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("turn_ms", "echo_ms"), [(None, 0.2), (0.5, None), (0.5, 0.0)])
def test_the_cpu_goal_without_both_measurements_is_missing(
    backend: str, turn_ms: float | None, echo_ms: float | None
) -> None:
    ratio = _cpu(backend, turn_ms, echo_ms)
    assert ratio.measured is None
    assert not ratio.met


def test_a_rows_cpu_per_request_is_the_servers_cpu_over_its_count() -> None:
    result = {
        "rate": 100.0, "unit": "turns/s", "count": 400, "p50_ms": 1.0, "p99_ms": 2.0,
        "refusals": {}, "errors": {}, "loadgen_cpu": 0.5, "server_cpu_seconds": 0.2,
    }  # fmt: skip
    row = Row.from_result("buffered", "sqlite", 16, result)
    assert row.extra["server_cpu_ms_per_request"] == 0.5


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("peak_mb", "met"), [(149.5, True), (150.0, False), (150.5, False)])
def test_a_server_peak_rss_must_stay_under_150_mb(backend: str, peak_mb: float, met: bool) -> None:
    key = ("buffered", backend, 64)
    rows = _rows(peaked=_row(key, 1000.0, server_peak_rss_bytes=peak_mb * MB))
    ratio = _find(evaluate(rows), PEAK_RSS_GOAL.format(backend=backend))
    assert ratio.measured == peak_mb
    assert ratio.met is met
    assert ratio.rows == (key,)


def _replay(backend: str, peak_mb: float, progress_bar: bool = True) -> Ratio:
    key = ("replay", backend, 1)
    row = _row(key, 1000.0, peak_rss_bytes=peak_mb * MB, progress_bar=progress_bar, seconds=1)
    ratios = [ratio for ratio in evaluate(_rows(replayed=row)) if f"({backend})" in ratio.goal]
    return _find(ratios, REPLAY_GOAL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("peak_mb", "met"), [(199.5, True), (200.0, False), (200.5, False)])
def test_a_replay_peak_rss_must_stay_under_200_mb(backend: str, peak_mb: float, met: bool) -> None:
    ratio = _replay(backend, peak_mb)
    assert ratio.measured == peak_mb
    assert ratio.met is met
    assert ratio.rows == (("replay", backend, 1),)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replay_without_its_progress_bar_is_not_met(backend: str) -> None:
    ratio = _replay(backend, 10.0, progress_bar=False)
    assert (ratio.measured, ratio.met) == (None, False)


# ------------------------------------------------------------------ the flood (issue 13)

FLOOD_FACTS: dict[str, Any] = {
    "unflooded_p50_ms": 2.0,  # every other row's p50 is 1.0 (buffered c1's too)
    "refusals_stored": 100,
    "refusal_limit": 50,
    "refusal_window_seconds": 1.0,
    "flood_seconds": 2.5,
    "flood_concurrency": 8,
    "flood_requests": 10_000,
    "flood_answered": 10_000,
}


def _flood(backend: str, flooded_ms: float | None = 4.0, **facts: Any) -> Row:
    row = _row(("flood", backend, 1), 1000.0, **{**FLOOD_FACTS, **facts})
    row.p50_ms = flooded_ms
    return row


def _flood_goal(goal: str, backend: str, row: Row) -> Ratio:
    """The goal on `backend`, the other backend's flood row far from it either way."""
    other = next(name for name in BACKENDS if name != backend)
    far = _flood(other, 1000.0, unflooded_p50_ms=1.0, refusals_stored=10**6, flood_seconds=99.0)
    return _find(evaluate(_rows(flood=row, other=far)), goal.format(backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("flooded_ms", "met"), [(3.9, True), (4.0, True), (4.02, False)])
def test_the_owner_p50_under_a_flood_may_be_twice_its_p50_alone(
    backend: str, flooded_ms: float, met: bool
) -> None:
    """Judged against the owner's own p50 before the flood (2 ms), not buffered c1's (1 ms)
    nor the other backend's."""
    ratio = _flood_goal(FLOOD_P50_GOAL, backend, _flood(backend, flooded_ms))
    assert ratio.measured == flooded_ms / 2.0
    assert (ratio.comparator, ratio.target, ratio.unit) == ("<=", 2.0, "x")
    assert ratio.met is met
    assert ratio.rows == (("flood", backend, 1),)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "row",
    [
        pytest.param({"flooded_ms": None}, id="no-owner-turn-during-the-flood"),
        pytest.param({"unflooded_p50_ms": None}, id="no-owner-turn-alone"),
    ],
)
def test_the_owner_p50_without_turns_is_missing(backend: str, row: dict[str, Any]) -> None:
    ratio = _flood_goal(FLOOD_P50_GOAL, backend, _flood(backend, **row))
    assert (ratio.measured, ratio.met) == (None, False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("flood_seconds", "allowed"),
    # limit 50 per 1 s window, 8 connections: (50 + 8) per window the flood may span
    [(0.99, 58), (1.0, 116), (2.5, 174), (3.0, 232)],
)
@pytest.mark.parametrize(("over", "met"), [(-1, True), (0, True), (1, False)])
def test_a_flood_stores_at_most_the_limit_and_its_connections_per_window(
    backend: str, flood_seconds: float, allowed: int, over: int, met: bool
) -> None:
    row = _flood(backend, flood_seconds=flood_seconds, refusals_stored=allowed + over)
    ratio = _flood_goal(FLOOD_STORED_GOAL, backend, row)
    assert ratio.measured == allowed + over
    assert (ratio.comparator, ratio.target, ratio.unit) == ("<=", allowed, "rows")
    assert ratio.met is met
    assert ratio.rows == (("flood", backend, 1),)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_allowance_follows_the_limit_window_and_connections(backend: str) -> None:
    row = _flood(
        backend,
        refusal_limit=10,
        refusal_window_seconds=2.0,
        flood_seconds=5.0,
        flood_concurrency=3,
        refusals_stored=0,
    )
    assert _flood_goal(FLOOD_STORED_GOAL, backend, row).target == 3 * (10 + 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "facts",
    [
        pytest.param({"flood_answered": 9_999}, id="a-junk-continue-unanswered"),
        pytest.param({"refusals_stored": None}, id="nothing-counted"),
    ],
)
def test_an_incomplete_flood_is_missing(backend: str, facts: dict[str, Any]) -> None:
    ratio = _flood_goal(FLOOD_STORED_GOAL, backend, _flood(backend, **facts))
    assert (ratio.measured, ratio.met) == (None, False)


# ------------------------------------------------------------------ the report


def test_the_table_marks_the_comparison_and_names_the_files_it_wrote() -> None:
    rows = _rows()
    table = render_table(rows, evaluate(rows), ["bench/results/latest.json", "dated.json"])
    legacy_line = next(line for line in table.splitlines() if LEGACY.goal in line)
    assert "info: met" in legacy_line
    assert "results written to bench/results/latest.json" in table
    assert "results written to dated.json" in table


def test_the_table_counts_stored_refusals_in_whole_rows() -> None:
    rows = _rows(flood=_flood("sqlite", refusals_stored=168))
    table = render_table(rows, evaluate(rows))
    line = next(line for line in table.splitlines() if "sqlite flood: refusals" in line)
    assert "168 rows" in line
    assert "<= 174 rows" in line


def test_a_full_run_is_kept_under_its_utc_start() -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert dated_path(Path("results"), started) == Path("results/2026-01-02T030405Z.json")


def test_a_full_runs_flame_graphs_carry_its_name() -> None:
    stamp = run_stamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    path = flame_graph_path(Path("results"), stamp, "sqlite", FLAME_SCENARIOS[1])
    assert path == Path("results/2026-01-02T030405Z-flame-sqlite-sse.speedscope.json")
    assert [scenario.workload for scenario in FLAME_SCENARIOS] == ["buffered", "sse", "websocket"]


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("2026-01-02T030405Z.json", True),  # a full run's dated copy: committed
        ("2026-01-02T030405Z-flame-sqlite-sse.speedscope.json", True),  # and its flame graphs
        ("2026-01-02T030405Z-flame-sqlite-sse.speedscope.json.tmp", False),
        ("latest.json", False),
        ("2026-01-02T030405Z.tmp", False),  # write_json's half-written file
        ("profile-postgresql.txt", False),
        ("logs/baton-sqlite.log", False),
    ],
)
def test_only_a_full_run_dated_results_are_kept_in_git(name: str, kept: bool) -> None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", f"bench/results/{name}"],
        cwd=root,
        check=False,
    )
    assert done.returncode == (1 if kept else 0)  # check-ignore: 0 ignored, 1 not ignored


# ------------------------------------------------------------------ the route's overhead
ROUTE_KEYS = (("route-litestar", "-", 1), ("route-raw-asgi", "-", 1))


def _route_rows(framework_us: float, raw_us: float, turn_ms: float | None) -> list[Row]:
    framework, raw = (
        _row(key, 1e6 / us, cpu_us_per_request=us)
        for key, us in zip(ROUTE_KEYS, (framework_us, raw_us), strict=True)
    )
    turn = _row(PG_C16, 1000.0)
    if turn_ms is not None:
        turn.extra["server_cpu_ms_per_request"] = turn_ms
    return _rows(framework=framework, raw=raw, turn=turn)


def test_the_route_overhead_is_the_framework_beyond_raw_as_a_share_of_a_turn() -> None:
    ratio = _find(evaluate(_route_rows(25.0, 5.0, 0.5)), ROUTE_GOAL)
    assert ratio.measured == pytest.approx(20.0 / 500.0)
    assert (ratio.comparator, ratio.target, ratio.informational) == ("<", 0.15, True)
    assert ratio.met
    assert ratio.rows == (*ROUTE_KEYS, PG_C16)


def test_a_route_costing_a_large_share_of_a_turn_is_flagged() -> None:
    assert not _find(evaluate(_route_rows(105.0, 5.0, 0.5)), ROUTE_GOAL).met


def test_the_route_overhead_without_the_turns_cpu_is_missing() -> None:
    ratio = _find(evaluate(_route_rows(25.0, 5.0, None)), ROUTE_GOAL)
    assert (ratio.measured, ratio.met) == (None, False)
