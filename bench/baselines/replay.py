"""`baton replay` on a fixture of many events: how long it takes and its peak memory.

The fixture is valid history written straight into a migrated database: sessions of ten
events (a start, three turns with records and a renewal, a refusal), chained like the stores
chain them. The replay runs as its own process under a small wrapper that reports the peak
RSS of that one child, so nothing else the benchmark started is counted.
"""

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from baton.domain.commands import ClaimTurn, CommitTurn, RenewClaim, StartSession
from baton.domain.events import Lease, RecordAppended, RequestRefused
from baton.domain.identifiers import SessionId, TokenDigest, digest_token
from baton.domain.outcomes import Finished
from baton.domain.refusals import RefusalReason
from baton.domain.state import SessionState, fold
from baton.infra.chain import ChainHeads
from baton.infra.codec import event_to_row
from baton.infra.database import create_engine, writing
from baton.infra.settings import Settings
from baton.infra.tables import events

EVENTS_PER_SESSION = 10
BATCH = 5000
# Runs `baton ...` as its only child and prints that child's peak RSS in KiB.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def _committed(
    state: SessionState, outcome: Finished, consumed: TokenDigest | None, issued: TokenDigest
) -> Any:
    assert state.claim is not None
    command = CommitTurn(
        session_id=state.session_id,
        at=state.updated_at,
        claim=state.claim,
        consumed=consumed,
        issued=issued,
        outcome=outcome,
    )
    (event,) = command.decide(state).events
    return event


def _session_rows(number: int, at: datetime) -> list[dict[str, Any]]:
    session_id = SessionId(f"{number:08x}-0000-7000-8000-000000000000")
    lease = Lease("fixture", at + timedelta(seconds=30))
    start = StartSession(session_id=session_id, at=at, input={"message": "hi"}, lease=lease)
    history: list[Any] = list(start.decide(None).events)
    tokens = [TokenDigest(digest_token(f"{number}:{turn}")) for turn in range(4)]
    history.append(_committed(fold(history), Finished("ok", state={"n": 1}), None, tokens[0]))
    for turn in (1, 2):
        state = fold(history)
        claim = ClaimTurn(
            session_id=session_id, at=at, presented=tokens[turn - 1], input={}, lease=lease
        )
        history += claim.decide(state).events
        state = fold(history)
        record = RecordAppended(
            session_id=session_id,
            seq=state.version + 1,
            turn=state.turn + 1,
            record={"n": turn},
            at=at,
        )
        history.append(record)
        if turn == 2:
            state = fold(history)
            assert state.claim is not None
            renew = RenewClaim(session_id=session_id, at=at, claim=state.claim, lease=lease)
            history += renew.decide(state).events
        history.append(_committed(fold(history), Finished(turn), tokens[turn - 1], tokens[turn]))
    heads, rows = ChainHeads(), []
    for event in history:
        row = event_to_row(event)
        row["hash"], heads = heads.append(row)
        rows.append({**row, "refusal_seq": None})  # every row of a batch has the same keys
    refused = event_to_row(
        RequestRefused(
            session_id=session_id,
            turn=None,
            reason=RefusalReason.STALE_TOKEN,
            presented_id=None,
            at=at,
        )
    )
    refused["refusal_seq"], refused["hash"], heads = heads.refuse(refused)
    return [*rows, refused]


async def _fill(database_url: str, event_count: int) -> int:
    engine = create_engine(Settings(database_url=database_url))
    at = datetime.now(UTC)
    written, batch = 0, []
    try:
        async with writing(engine).begin() as conn:
            for number in range(event_count // EVENTS_PER_SESSION):
                batch += _session_rows(number, at)
                if len(batch) >= BATCH:
                    await conn.execute(insert(events), batch)
                    written, batch = written + len(batch), []
            if batch:
                await conn.execute(insert(events), batch)
                written += len(batch)
    finally:
        await engine.dispose()
    return written


def run_replay(database_url: str, event_count: int, baton: str) -> dict[str, Any]:
    """`database_url` must already be migrated to head."""
    filled = asyncio.run(_fill(database_url, event_count))
    began = time.perf_counter()
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE, baton, "replay", "--database-url", database_url],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if measured.returncode != 0:
        raise RuntimeError(f"baton replay failed: {measured.stderr[-2000:]}")
    peak_kib = int(measured.stdout.strip().splitlines()[-1])
    return {
        "rate": filled / elapsed,
        "unit": "events/s",
        "count": filled,
        "p50_ms": None,
        "p99_ms": None,
        "refusals": {},
        "errors": {},
        "loadgen_cpu": None,
        "extra": {
            "events": filled,
            "seconds": round(elapsed, 2),
            "peak_rss_bytes": peak_kib * 1024,
            "progress_bar": "rebuilding the projection" in measured.stderr,
        },
    }
