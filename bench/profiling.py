"""The server's hot path: PostgreSQL buffered c16 once more, with `baton serve` under
pyinstrument (full runs only).

pyinstrument writes its session when the profiled process exits cleanly, which is why the
server is stopped with SIGINT (uvicorn's graceful shutdown), never kill -9. The raw session
is rendered three times: the call tree, and flat lists of functions by self time and by
total (inclusive) time.
"""

import re
from pathlib import Path
from typing import Any

from pyinstrument.renderers import ConsoleRenderer
from pyinstrument.session import Session

from bench import rows
from bench.config import RunConfig
from bench.loadgen import LoadGenerator
from bench.progress import progress
from bench.scenarios import Scenario, run_scenario
from bench.servers import profiled_baton_server

TOP_FUNCTIONS = 25
PROFILED = Scenario(rows.BUFFERED, "buffered", 16)
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


def profile_postgres_c16(
    database_url: str,
    loadgen: LoadGenerator,
    config: RunConfig,
    results_dir: Path,
    work_dir: Path,
) -> dict[str, Any]:
    session_path = work_dir / "profile-postgresql.pyisession"
    log_dir = results_dir / "logs"
    with profiled_baton_server(database_url, session_path, log_dir) as server:
        row = run_scenario(PROFILED, rows.POSTGRESQL, server, loadgen, config)
    if not session_path.exists():
        raise RuntimeError(f"pyinstrument wrote no session:\n{server.log_tail()}")
    session = Session.load(str(session_path))
    renderings = {
        "tree": ConsoleRenderer(unicode=False, color=False),
        "self": ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="self"),
        "total": ConsoleRenderer(unicode=False, color=False, flat=True, flat_time="total"),
    }
    paths: dict[str, str] = {}
    texts: dict[str, str] = {}
    for view, renderer in renderings.items():
        suffix = "" if view == "tree" else f"-{view}"
        path = results_dir / f"profile-postgresql{suffix}.txt"
        texts[view] = renderer.render(session)
        path.write_text(texts[view])
        paths[view] = str(path)
    progress(f"profiles written: {', '.join(paths.values())}")
    duration = session.duration or 1.0
    return {
        "scenario": "buffered c16 on postgresql, server under pyinstrument",
        "rate_under_profiler": row.rate,
        "duration_seconds": session.duration,
        "cpu_seconds": session.cpu_time,
        "files": paths,
        "top_self_time": top_functions(texts["self"], duration),
        "top_total_time": top_functions(texts["total"], duration),
    }
