"""Turn handlers for tests that run against real server processes (--handler tests.handlers:...)."""

import asyncio
from pathlib import Path

from baton.api.demo import demo_handler
from baton.domain.handler import Turn
from baton.domain.outcomes import Finished, Parked
from baton.domain.ports import StoreUnavailable

HOLD_LIMIT_SECONDS = 60


async def test_handler(turn: Turn) -> Finished | Parked:
    """The demo handler, except that `{"message": "/hold", "until": PATH}` journals a record,
    then holds the turn in flight until the file PATH exists, whatever process makes it,
    `{"message": "/sleep", "seconds": S}` journals a record, then sleeps S seconds, and
    `{"message": "/records", "count": N, "until": PREFIX}` journals N records, holding the
    turn after record i (counted from 1) until the file PREFIX.i exists, and
    `{"message": "/flood", "deltas": N, "size": B}` streams N deltas of B characters as fast
    as it can, then finishes, and `/outage` journals a record, then fails as Baton's store does
    when its database is lost under a turn."""
    if turn.input.get("message") == "/outage":
        await turn.record({"before": "the outage"})
        raise StoreUnavailable("ConnectionResetError: the database went away")
    if turn.input.get("message") == "/hold":
        until = Path(str(turn.input["until"]))
        await turn.record({"holding": str(until)})
        await _held_until(until)
        return Finished({"held": True}, state={"turns": 0})
    if turn.input.get("message") == "/records":
        count, prefix = int(str(turn.input["count"])), str(turn.input["until"])
        for number in range(1, count + 1):
            await turn.record({"record": number})
            await _held_until(Path(f"{prefix}.{number}"))
        return Finished({"records": count}, state={"turns": turn.number})
    if turn.input.get("message") == "/sleep":
        seconds = float(str(turn.input["seconds"]))
        await turn.record({"sleeping": seconds})
        await asyncio.sleep(seconds)
        return Finished({"slept": seconds}, state={"turns": turn.number})
    if turn.input.get("message") == "/flood":
        deltas, size = int(str(turn.input["deltas"])), int(str(turn.input["size"]))
        for number in range(deltas):
            await turn.delta(f"{number % 10}" * size)
            if number % 100 == 0:
                await asyncio.sleep(0)  # let the transport run, as a real handler would
        return Finished({"deltas": deltas}, state={"turns": turn.number})
    return await demo_handler(turn)


async def _held_until(until: Path) -> None:
    """Wait until the file `until` exists (at most HOLD_LIMIT_SECONDS)."""
    for _ in range(HOLD_LIMIT_SECONDS * 100):
        if until.exists():  # noqa: ASYNC240 - a test handler polling a flag file
            return
        await asyncio.sleep(0.01)
