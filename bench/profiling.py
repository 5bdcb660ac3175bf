"""The server's hot path: PostgreSQL buffered c16 once more, with `baton serve` under
pyinstrument (full runs only); and a flame graph of each turn transport (buffered, SSE,
WebSocket at c16) on each database.

pyinstrument writes its session when the profiled process exits cleanly, which is why the
server is stopped with SIGINT (uvicorn's graceful shutdown), never kill -9. The raw session
is rendered three times: the call tree, and flat lists of functions by self time and by
total (inclusive) time.
"""

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyinstrument.renderers import ConsoleRenderer, SpeedscopeRenderer
from pyinstrument.session import Session

from bench import rows
from bench.config import RunConfig
from bench.loadgen import LoadGenerator
from bench.progress import progress
from bench.rows import Row
from bench.scenarios import Scenario, run_scenario
from bench.servers import profiled_baton_server

TOP_FUNCTIONS = 25
PROFILED = Scenario(rows.BUFFERED, "buffered", 16)
# The flame graphs (issue 15 item 1): every transport's turn on each database, each on a
# profiled server of its own. PostgreSQL buffered is PROFILED's session, not run twice.
FLAME_SCENARIOS = (
    PROFILED,
    Scenario(rows.SSE, "sse", 16),
    Scenario(rows.WEBSOCKET, "websocket", 16),
)
# Short windows: a flame graph's shares settle within seconds, and there are six of them.
FLAME_MEASURE_SECONDS = 5.0
# A line of pyinstrument's flat rendering: seconds, then the function and where it is. Time
# in C code (uvloop's loop, asyncpg's protocol, JSON codecs) shows as `[self]` of the file
# that called into it.
FLAT_LINE = re.compile(r"^\s*(\d+\.\d+)\s+(\S.*)$")


def top_functions(
    flat_text: str, duration: float, limit: int = TOP_FUNCTIONS
) -> list[dict[str, Any]]:
    """The first lines of a flat rendering (`seconds  function  file:line`), with each
    function's share of the profiled duration."""
    top = []
    for line in flat_text.splitlines():
        match = FLAT_LINE.match(line)
        if match:
            seconds, function = float(match.group(1)), match.group(2)
            top.append({"function": function, "seconds": seconds, "share": seconds / duration})
        if len(top) == limit:
            break
    return top


def flame_graph_path(results_dir: Path, stamp: str, backend: str, scenario: Scenario) -> Path:
    """Where a full run keeps a flame graph (speedscope's JSON: open it at speedscope.app),
    named after the run's dated results, so it is committed with them."""
    return results_dir / f"{stamp}-flame-{backend}-{scenario.workload}.speedscope.json"


@dataclass(frozen=True, slots=True)
class Profiling:
    """What every profiled run of a full bench shares: the load, the run's settings, where
    pyinstrument's raw sessions go (work_dir) and where what is kept goes (results_dir),
    and the run's name, which its flame graphs carry."""

    loadgen: LoadGenerator
    config: RunConfig
    work_dir: Path
    results_dir: Path
    stamp: str

    def run(
        self, scenario: Scenario, backend: str, database_url: str, config: RunConfig
    ) -> tuple[Row, Session]:
        """`scenario` against a profiled `baton serve` of its own: its row and session."""
        session_path = self.work_dir / f"profile-{backend}-{scenario.workload}.pyisession"
        log_dir = self.results_dir / "logs"
        with profiled_baton_server(database_url, session_path, log_dir) as server:
            row = run_scenario(scenario, backend, server, self.loadgen, config)
        if not session_path.exists():
            raise RuntimeError(f"pyinstrument wrote no session:\n{server.log_tail()}")
        return row, Session.load(str(session_path))

    def keep_flame_graph(self, session: Session, backend: str, scenario: Scenario) -> Path:
        path = flame_graph_path(self.results_dir, self.stamp, backend, scenario)
        path.write_text(SpeedscopeRenderer().render(session))
        return path


def flame_graphs(profiling: Profiling, backend: str, database_url: str) -> dict[str, str]:
    """A flame graph per transport on `backend` (PostgreSQL buffered: profile_postgres_c16)."""
    config = profiling.config
    short = replace(config, measure_seconds=min(config.measure_seconds, FLAME_MEASURE_SECONDS))
    written = {}
    for scenario in FLAME_SCENARIOS:
        if backend == rows.POSTGRESQL and scenario == PROFILED:
            continue
        progress(f"flame graph: {backend} {scenario.workload} c{scenario.concurrency} ...")
        _, session = profiling.run(scenario, backend, database_url, short)
        path = profiling.keep_flame_graph(session, backend, scenario)
        written[f"{backend} {scenario.workload}"] = str(path)
    return written


def profile_postgres_c16(profiling: Profiling, database_url: str) -> dict[str, Any]:
    results_dir = profiling.results_dir
    row, session = profiling.run(PROFILED, rows.POSTGRESQL, database_url, profiling.config)
    flame = profiling.keep_flame_graph(session, rows.POSTGRESQL, PROFILED)
    renderings = {
        "tree": ConsoleRenderer(unicode=False, color=False),
        "self": ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="self"),
        "total": ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="total"),
    }
    written: dict[str, str] = {}
    texts: dict[str, str] = {}
    for view, renderer in renderings.items():
        suffix = "" if view == "tree" else f"-{view}"
        path = results_dir / f"profile-postgresql{suffix}.txt"
        texts[view] = renderer.render(session)
        path.write_text(texts[view])
        written[view] = str(path)
    progress(f"profiles written: {', '.join(written.values())}")
    duration = session.duration or 1.0
    return {
        "scenario": "buffered c16 on postgresql, server under pyinstrument",
        "rate_under_profiler": row.rate,
        "duration_seconds": session.duration,
        "cpu_seconds": session.cpu_time,
        "files": {**written, "flame": str(flame)},
        "top_self_time": top_functions(texts["self"], duration),
        "top_total_time": top_functions(texts["total"], duration),
    }
