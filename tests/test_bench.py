"""The benchmark suite (`python -m bench`) runs end to end in its smoke configuration: real
servers on both backends, every baseline, every row and ratio in the JSON, and the race held
to the single-claim rule. The numbers of a smoke run mean nothing; their presence does."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.wire import SseParser
from tests.databases import IN_CI, require_postgres

ROOT = Path(__file__).resolve().parents[1]
LATEST = ROOT / "bench" / "results" / "latest.json"
SMOKE_TIMEOUT_SECONDS = 120  # it takes about 20 s; a hung server must not hang the suite

BATON_ROWS = {
    (name, backend, concurrency)
    for backend in ("sqlite", "postgresql")
    for name, concurrency in (
        ("buffered", 1),
        ("buffered", 16),
        ("buffered", 64),
        ("buffered-keyed", 16),
        ("sse", 16),
        ("websocket", 16),
        ("race", 50),
        ("start", 16),
        ("resume", 16),
        ("idempotent-retry", 16),
        ("buffered-2-workers", 16),
        ("flood", 1),
        ("peer-eventsourcing", 1),
        ("peer-eventsourcing", 16),
        ("baton-store", 1),
        ("baton-store", 16),
        ("replay", 1),
    )
}
BASELINE_ROWS = {
    ("http-floor", "-", 1),
    ("http-floor", "-", 16),
    ("sql-floor-pg", "postgresql", 1),
    ("sql-floor-pg", "postgresql", 16),
    ("sql-floor-pg-legacy", "postgresql", 1),
    ("sql-floor-pg-legacy", "postgresql", 16),
    ("sql-floor-sqlite", "sqlite", 1),
    ("sql-floor-sqlite", "sqlite", 16),
    ("route-litestar", "-", 1),
    ("route-raw-asgi", "-", 1),
}
SmokeRun = tuple[dict[str, Any], str]  # the results JSON, and the printed table
# The seven goals of issue 4 and replay's memory (issue 6), per backend where they say so,
# the PostgreSQL ratio against the legacy floor (for comparison), issue 11's three per
# backend (keyed turns, resumed streams, idempotent retries against buffered turns), and
# issue 13's two per backend (the owner's p50 under a flood, the refusals it stored),
# issue 14's two workers against one per backend (for comparison), and issue 15's server CPU
# per turn against per echo request per backend, its 0.35x PostgreSQL milestone, and its
# framework route against a raw ASGI one (for comparison).
GOALS = 32
# SQLite refuses `baton serve --workers 2`: the row records that instead of a measurement.
REFUSED = {("buffered-2-workers", "sqlite", 16)}
REFUSED_RATIOS = {"sqlite buffered c16: 2 workers >= 1 x 1 worker (comparison)"}


def require_pgbench() -> None:
    if shutil.which("pgbench") is None:
        message = "pgbench is not installed; the sql-floor-pg baseline needs it"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    require_postgres()
    require_pgbench()
    output = tmp_path_factory.mktemp("bench") / "results.json"
    latest_before = LATEST.stat().st_mtime_ns if LATEST.exists() else None
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"python -m bench --smoke failed:\n{done.stderr[-4000:]}"
    latest_after = LATEST.stat().st_mtime_ns if LATEST.exists() else None
    assert latest_after == latest_before, "a smoke run must not overwrite latest.json"
    return json.loads(output.read_text()), done.stdout


@pytest.mark.e2e
def test_every_row_is_measured_without_errors(smoke_run: SmokeRun) -> None:
    results, _ = smoke_run
    rows = {(row["name"], row["backend"], row["concurrency"]): row for row in results["rows"]}
    assert set(rows) == BATON_ROWS | BASELINE_ROWS
    for key, row in rows.items():
        assert (row["rate"] > 0) is (key not in REFUSED), key
        assert row["errors"] == {}, key
    for key in REFUSED:
        assert "on SQLite" in rows[key]["extra"]["refused"]
    floor = rows[("sql-floor-pg", "postgresql", 16)]["extra"]
    assert "WITH claimed AS" in floor["pgbench_script"]  # the store's CLAIM, generated
    assert rows[("buffered", "sqlite", 64)]["extra"]["server_peak_rss_bytes"] > 0
    assert rows[("buffered", "postgresql", 64)]["extra"]["server_peak_rss_bytes"] > 0


@pytest.mark.e2e
def test_the_recovery_rows_are_refused_nothing(smoke_run: SmokeRun) -> None:
    """Keyed turns commit; every resumed stream replays the last turn's outcome and every
    retry is answered as replayed (a client counts anything else as an error)."""
    results, _ = smoke_run
    rows = {(row["name"], row["backend"], row["concurrency"]): row for row in results["rows"]}
    for backend in ("sqlite", "postgresql"):
        for name, unit in (
            ("buffered-keyed", "turns/s"),
            ("resume", "streams/s"),
            ("idempotent-retry", "replays/s"),
        ):
            row = rows[(name, backend, 16)]
            assert row["unit"] == unit, (name, backend)
            assert row["refusals"] == {}, (name, backend)


@pytest.mark.e2e
def test_every_race_round_has_exactly_one_winner(smoke_run: SmokeRun) -> None:
    results, _ = smoke_run
    races = [row for row in results["rows"] if row["name"] == "race"]
    assert len(races) == 2
    for row in races:
        race = row["extra"]["race"]
        assert race["rounds"] == results["durations"]["race_rounds"]
        assert race["winners_per_round"] == [1] * race["rounds"]
        assert race["conflicts_per_round"] == [race["width"] - 1] * race["rounds"]
        assert not row["failed"]
    assert results["race_ok"] is True


@pytest.mark.e2e
def test_the_flood_is_answered_and_stores_only_what_it_was_refused(smoke_run: SmokeRun) -> None:
    """Every junk continue is answered: refused (stale-token, a stored row) until the limit,
    then 429 too-many-refusals (nothing stored). The events table grew by exactly the
    refusals the flood was answered, within what the limit allows."""
    results, _ = smoke_run
    ratios = {ratio["goal"]: ratio for ratio in results["ratios"]}
    for backend in ("sqlite", "postgresql"):
        row = next(
            row for row in results["rows"] if (row["name"], row["backend"]) == ("flood", backend)
        )
        facts = row["extra"]
        answers = facts["flood_answers"]
        assert facts["flood_answered"] == facts["flood_requests"], backend
        assert facts["flood_errors"] == {}, backend
        assert set(answers) == {"409 stale-token", "429 too-many-refusals"}, backend
        assert facts["refusals_stored"] == answers["409 stale-token"], backend
        assert row["refusals"] == {}, backend  # the owner is refused nothing
        assert facts["unflooded_count"] > 0, backend
        stored = ratios[f"{backend} flood: refusals stored <= what the limit allows"]
        assert stored["met"] is True, stored


@pytest.mark.e2e
def test_every_ratio_is_measured_and_the_table_is_printed(smoke_run: SmokeRun) -> None:
    results, table = smoke_run
    ratios = results["ratios"]
    assert len(ratios) == GOALS
    for ratio in ratios:
        assert (ratio["measured"] is None) is (ratio["goal"] in REFUSED_RATIOS), ratio["goal"]
        assert isinstance(ratio["met"], bool)
        assert ratio["goal"] in table
    assert "RATIOS" in table
    assert "results written to" in table  # and no dated copy: that is a full run's
    assert table.count("results written to") == 1
    machine = results["machine"]
    for fact in ("cpu_count", "python", "postgres", "sqlite"):
        assert machine[fact], fact
    assert results["timestamp"]
    assert results["durations"]["mode"] == "smoke"


# ------------------------------------------------------------------ the load generator's SSE

PRIMED_STREAM = (
    b"id: 3\r\nretry: 1000\r\n\r\n"  # the priming message: an id, no data
    b": ping\r\n\r\n"
    b'id: 4\r\nevent: record\r\ndata: {"type":"record"}\r\n\r\n'
    b'id: 5\r\nevent: outcome\r\ndata: {"type":"outcome"}\r\n\r\n'
)


def test_the_sse_parser_skips_the_priming_message_but_keeps_its_id() -> None:
    parser = SseParser()
    assert parser.feed(PRIMED_STREAM) == [
        ("record", b'{"type":"record"}'),
        ("outcome", b'{"type":"outcome"}'),
    ]
    assert (parser.first_id, parser.last_id) == ("3", "5")


@pytest.mark.parametrize("size", [1, 2, 7])
def test_the_sse_parser_reads_a_stream_split_anywhere(size: int) -> None:
    """Chunks may end mid-line, mid-CR-LF or right after the priming message."""
    parser = SseParser()
    events = []
    for start in range(0, len(PRIMED_STREAM), size):
        events += parser.feed(PRIMED_STREAM[start : start + size])
    assert [event for event, _ in events] == ["record", "outcome"]
    assert (parser.first_id, parser.last_id) == ("3", "5")


def test_a_primed_stream_without_events_yields_none() -> None:
    parser = SseParser()
    assert parser.feed(b"id: 7\r\nretry: 1000\r\n\r\n") == []
    assert (parser.first_id, parser.last_id) == ("7", "7")
