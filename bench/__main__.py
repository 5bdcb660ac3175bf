"""`python -m bench`: run the suite, print one table (stdout), write the results JSON.

Every run writes --output (bench/results/latest.json, git-ignored); a full run also writes
the same JSON as bench/results/<UTC start>.json next to it, which is committed, so that
published figures name the run they come from. The table ends with the files it wrote.

Exit status: 0 when the run completed, 1 when the race broke the single-claim rule (the
results are still written), 2 when the benchmark could not run at all.
"""

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from baton.infra.settings import Settings
from bench.config import DEFAULT_OUTPUT, FULL, QUICK, ROOT, SMOKE, RunConfig
from bench.databases import POSTGRES_ADMIN_URL, postgres_version
from bench.goals import evaluate
from bench.loadgen import LoadGenerator
from bench.progress import progress
from bench.report import (
    build_json,
    dated_path,
    machine_info,
    render_profile,
    render_table,
    run_stamp,
    write_json,
)
from bench.suite import Suite


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Baton's benchmark suite: real servers, baselines, one table.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short durations (under two minutes), every scenario"
    )
    # For tests/test_bench.py: every row and ratio in a few seconds; the numbers mean little.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the results JSON (default {DEFAULT_OUTPUT})",
    )
    return parser


def _config(args: argparse.Namespace) -> RunConfig:
    if args.smoke:
        return SMOKE
    return QUICK if args.quick else FULL


def _shown(path: Path) -> str:
    """A path as the reader would type it: relative to the checkout when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _config(args)
    output: Path = args.output.resolve()
    started_at, began = datetime.now(UTC), time.perf_counter()
    try:
        machine = machine_info(postgres_version())
    except psycopg.OperationalError as error:
        print(f"bench: PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {error}", file=sys.stderr)
        return 2
    progress(f"{config.mode} run; results to {output}")
    with (
        tempfile.TemporaryDirectory(prefix="baton-bench-") as work_dir,
        LoadGenerator() as loadgen,
    ):
        suite = Suite(config, loadgen, Path(work_dir), output.parent, run_stamp(started_at))
        rows = suite.run()
    ratios = evaluate(rows)
    elapsed = time.perf_counter() - began
    peers = [row for row in rows if "sqlite" in row.extra]
    settings = {
        "baton_sqlite_synchronous": Settings.from_env().sqlite_synchronous,
        "eventsourcing_sqlite_pragmas": peers[0].extra["sqlite"] if peers else None,
    }
    content = build_json(
        config=config,
        started_at=started_at,
        elapsed_seconds=elapsed,
        phases=suite.phases,
        machine=machine,
        rows=rows,
        ratios=ratios,
        profile=suite.profile,
        settings=settings,
    )
    written = [output, *([dated_path(output.parent, started_at)] if config.keep_dated else [])]
    for path in written:
        write_json(path, content)
    print(render_table(rows, ratios, [_shown(path) for path in written]))
    if suite.profile:
        print(f"\n{render_profile(suite.profile)}")
    progress(f"done in {elapsed:.0f} s; results in {', '.join(map(_shown, written))}")
    if suite.profile:
        progress(f"profiles: {', '.join(suite.profile['files'].values())}")
    if not content["race_ok"]:
        progress("FAILED: the race broke the single-claim rule (see the race rows)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
