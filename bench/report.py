"""The printed table (one row per measurement, then the ratios) and the JSON with the same
content, plus the machine and the durations the run used."""

import json
import os
import platform
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.config import RACE_WIDTH, SERVER_LOG_LEVEL, RunConfig
from bench.goals import Ratio
from bench.rows import Row

COLUMNS = (
    "name",
    "backend",
    "conc",
    "rate",
    "unit",
    "p50 ms",
    "p99 ms",
    "refusals",
    "errors",
    "loadgen CPU",
    "notes",
)
RIGHT_ALIGNED = {"conc", "rate", "p50 ms", "p99 ms", "loadgen CPU"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _by_reason(counted: dict[str, int]) -> str:
    total = sum(counted.values())
    if not total:
        return "0"
    reasons = ", ".join(f"{reason} {count}" for reason, count in counted.items())
    return f"{total} ({reasons})"


def _cpu(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def _cells(row: Row) -> list[str]:
    return [
        row.name,
        row.backend,
        str(row.concurrency),
        f"{row.rate:.1f}",
        row.unit,
        _ms(row.p50_ms),
        _ms(row.p99_ms),
        _by_reason(row.refusals),
        _by_reason(row.errors),
        _cpu(row.loadgen_cpu),
        "; ".join(row.notes),
    ]


def _layout(header: Sequence[str], lines: list[list[str]], right: set[str]) -> list[str]:
    widths = [max(len(cells[i]) for cells in [list(header), *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if name in right else cell.ljust(width)
            for cell, width, name in zip(cells, widths, header, strict=True)
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [render(header), rule, *(render(cells) for cells in lines)]


COUNTED_UNITS = {"rows"}  # whole numbers: no decimals


def _number(value: float, unit: str) -> str:
    return f"{value:.0f}" if unit in COUNTED_UNITS else f"{value:.2f}"


def _measured(ratio: Ratio) -> str:
    if ratio.measured is None:
        return "missing"
    measured = _number(ratio.measured, ratio.unit)
    return f"{measured}{ratio.unit}" if ratio.unit == "x" else f"{measured} {ratio.unit}"


def _target(ratio: Ratio) -> str:
    unit = ratio.unit if ratio.unit == "x" else f" {ratio.unit}"
    return f"{ratio.comparator} {_number(ratio.target, ratio.unit)}{unit}"


def _result(ratio: Ratio) -> str:
    if ratio.informational:  # a comparison, not a goal: say so rather than MET / NOT MET
        return f"info: {'met' if ratio.met else 'not met'}"
    return "met" if ratio.met else "NOT MET"


def render_table(rows: list[Row], ratios: list[Ratio], written: Sequence[str] = ()) -> str:
    lines = _layout(COLUMNS, [_cells(row) for row in rows], RIGHT_ALIGNED)
    ratio_lines = _layout(
        ("goal", "measured", "goal", "result", "detail"),
        [[r.goal, _measured(r), _target(r), _result(r), r.detail] for r in ratios],
        {"measured"},
    )
    cpu_note = (
        "loadgen CPU: CPU time of the load generator's process over the measured wall time "
        "(100% = one core)"
    )
    files = [f"results written to {path}" for path in written]
    return "\n".join([*lines, "", cpu_note, "", "RATIOS", *ratio_lines, "", *files]).rstrip()


def run_stamp(started_at: datetime) -> str:
    """A run's name: its UTC start, second precision (a full run takes minutes, so no two
    share a name)."""
    return f"{started_at.astimezone(UTC):%Y-%m-%dT%H%M%SZ}"


def dated_path(directory: Path, started_at: datetime) -> Path:
    """Where a full run keeps its results for good, named by run_stamp."""
    return directory / f"{run_stamp(started_at)}.json"


def render_profile(profile: dict[str, Any], top: int = 12) -> str:
    lines = [
        f"PROFILE ({profile['scenario']}: {profile['rate_under_profiler']:.0f} turns/s; "
        f"{profile['cpu_seconds']:.1f} s CPU in {profile['duration_seconds']:.1f} s)",
        *(f"{view}: {path}" for view, path in profile["files"].items()),
        "top functions by self time (time in C code shows as [self] of its caller's file):",
    ]
    lines += [
        f"  {entry['share'] * 100:5.1f}%  {entry['function']}"
        for entry in profile["top_self_time"][:top]
    ]
    return "\n".join(lines)


def machine_info(postgres_version: str) -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": postgres_version,
        "sqlite": sqlite3.sqlite_version,
        "loadavg_at_start": list(load),
    }


def build_json(
    *,
    config: RunConfig,
    started_at: datetime,
    elapsed_seconds: float,
    phases: dict[str, float],
    machine: dict[str, Any],
    rows: list[Row],
    ratios: list[Ratio],
    profile: dict[str, Any] | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "timestamp": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "mode": config.mode,
        # A shared machine: the load averages around the run say how quiet it was.
        "machine": {**machine, "loadavg_at_end": list(os.getloadavg())},
        "durations": {
            **config.as_json(),
            "race_width": RACE_WIDTH,
            "elapsed_seconds": elapsed_seconds,
            "phase_seconds": phases,
        },
        "settings": {"server_log_level": SERVER_LOG_LEVEL, **settings},
        "rows": [row.as_json() for row in rows],
        "ratios": [ratio.as_json() for ratio in ratios],
        "race_ok": all(not row.failed for row in rows),
        "profile": profile,
    }


def write_json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n")
    temporary.replace(path)  # never a half-written file where a reader looks
