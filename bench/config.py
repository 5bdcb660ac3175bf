"""How long each measurement runs, per mode, and the load shapes every mode shares."""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_OUTPUT = RESULTS_DIR / "latest.json"  # git-ignored: every run overwrites it

# The load shapes of issue 4; every mode runs all of them, only for less time.
BUFFERED_CONCURRENCY = (1, 16, 64)
STREAM_CONCURRENCY = 16  # SSE, WebSocket, start-only, keyed, resume, retry; the baselines'
# reference point
PEAK_RSS_CONCURRENCY = 64
RACE_WIDTH = 50  # concurrent continues presenting one token, per round
# The store-appends comparison runs one writer per store, then this many; its goal is judged
# at equal concurrency, because concurrent writers are what a session store serves (and what
# a table lock per save, or a commit per save, cannot serve well).
APPEND_WRITERS = 16
# The flood of issue 13: junk continues at one session, from this many connections of one
# client (its own source address), while the session's owner runs its turns from another.
# The server under the flood refuses a client past FLOOD_REFUSAL_LIMIT refusals per
# FLOOD_REFUSAL_WINDOW seconds (BATON_REFUSAL_LIMIT, BATON_REFUSAL_WINDOW): a window short
# enough that a flood of a few seconds spans several, so each new window's budget is tested.
FLOOD_CONCURRENCY = 8
FLOOD_REFUSAL_LIMIT = 50
FLOOD_REFUSAL_WINDOW = 1.0
# Past the limit, the server answers the flooder's 429s at most FLOOD_REFUSAL_PACE a second
# (BATON_REFUSAL_PACE), holding each request until its slot, so 10,000 junk continues take
# about 10 s. A faster pace is the harder test for the owner: the flood then gets more 429s,
# and so more of the server's CPU, a second. 1000 is ten times the server's default. With a
# pace, more connections buy the flooder more held requests, not more answers, so 8 still
# tests what a closed loop of keep-alive requests can take.
FLOOD_REFUSAL_PACE = 1000.0

# Access logging is uvicorn's, not Baton's; at "info" every request writes a line to the
# server's stdout and that cost would dominate a 2-core box. Baton and the http-floor get the
# same level, so every comparison still differs only in the app.
SERVER_LOG_LEVEL = "warning"


@dataclass(frozen=True, slots=True)
class RunConfig:
    mode: str
    warmup_seconds: float  # unmeasured load before each scenario's window
    measure_seconds: float  # each scenario's measured window
    race_rounds: int
    pgbench_seconds: int  # pgbench -T takes whole seconds
    pgbench_warmup_seconds: int  # 0: no unmeasured pgbench run first
    append_events: int  # events each store appends, measured
    append_warmup_events: int
    replay_events: int  # the fixture `baton replay` rebuilds the projection from
    flood_requests: int  # junk continues in the flood (issue 13 asks for 10,000)
    route_requests: int  # turn-shaped requests through each route (bench/route_overhead.py)
    profile: bool  # run the PostgreSQL c16 scenario again under pyinstrument
    # Also write the results as bench/results/<UTC start>.json, a file kept in git: only the
    # full run's numbers are worth keeping (quick and smoke runs measure too briefly).
    keep_dated: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


FULL = RunConfig(
    mode="full",
    warmup_seconds=1.0,
    measure_seconds=15.0,
    race_rounds=40,
    pgbench_seconds=10,
    pgbench_warmup_seconds=1,
    append_events=5000,
    append_warmup_events=200,
    replay_events=100_000,
    flood_requests=10_000,
    route_requests=20_000,
    profile=True,
    keep_dated=True,
)

QUICK = RunConfig(
    mode="quick",
    warmup_seconds=0.5,
    measure_seconds=2.0,
    race_rounds=8,
    pgbench_seconds=2,
    pgbench_warmup_seconds=1,
    append_events=400,
    append_warmup_events=40,
    replay_events=10_000,
    flood_requests=10_000,
    route_requests=10_000,
    profile=False,
    keep_dated=False,
)

# For tests/test_bench.py: every row and ratio present, in well under 30 seconds.
SMOKE = RunConfig(
    mode="smoke",
    warmup_seconds=0.1,
    measure_seconds=0.3,
    race_rounds=2,
    pgbench_seconds=1,
    pgbench_warmup_seconds=0,
    append_events=60,
    append_warmup_events=10,
    replay_events=200,
    # At FLOOD_REFUSAL_PACE a flood lasts about flood_requests / pace seconds: a few
    # hundred keep the smoke run as short as it was before the pace.
    flood_requests=400,
    route_requests=1_000,
    profile=False,
    keep_dated=False,
)

MODES = {config.mode: config for config in (FULL, QUICK, SMOKE)}
