"""A live turn's idle cues (api/live.py, `events_or_idle`): a None whenever the reader has
waited `idle_seconds` for nothing, counted from when that wait began, never while the reader
is busy elsewhere, and no timer left behind when the stream ends.

The times are wide apart (tenths of a second) so that a loaded machine's late wake-ups do
not decide the outcome."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from baton.api.live import LiveEvent, LiveTurn, RecordEvent, TurnCrashed
from baton.domain.identifiers import SessionId

END = TurnCrashed("test", "the scripted turn ended")


class _ScriptedTurn:
    """Enough of an OpenTurn for LiveTurn.run: runs `script` with the turn as its sink."""

    number = 1
    session_id = SessionId("0" * 32)

    def __init__(self, script: Callable[[LiveTurn], Awaitable[None]]) -> None:
        self._script = script

    async def run(self, sink: LiveTurn) -> TurnCrashed:
        await self._script(sink)
        return END


async def _read(
    script: Callable[[LiveTurn], Awaitable[None]], idle: float, busy: float = 0.0
) -> list[LiveEvent | None]:
    """What events_or_idle gives a reader that spends `busy` seconds on each item."""
    live = LiveTurn(SessionId("0" * 32), claim_seq=1)
    task = asyncio.create_task(live.run(_ScriptedTurn(script)))  # type: ignore[arg-type]
    seen: list[LiveEvent | None] = []
    async for event in live.events_or_idle(idle):
        seen.append(event)
        await asyncio.sleep(busy)
    await task
    return seen


def _timers(loop: Any) -> int:
    # asyncio's own loop keeps its timers here; the tests run on it, not on uvloop.
    return sum(1 for handle in loop._scheduled if not handle.cancelled())


async def test_a_silent_turn_gets_a_cue_every_idle_period() -> None:
    async def silent(_: LiveTurn) -> None:
        await asyncio.sleep(0.75)

    seen = await _read(silent, idle=0.2)
    assert seen[-1] == END
    assert 2 <= seen.count(None) <= 3, seen  # at 0.2, 0.4 and 0.6 s; late wake-ups, fewer
    assert set(seen[:-1]) == {None}


async def test_the_cue_counts_from_when_the_current_wait_began() -> None:
    """A record at 0.4 s restarts the wait: the next cue would be due at 1.0 s, after the
    turn's end at 0.8 s. (A timer counted from the stream's start would cue at 0.6 s.)"""

    async def record_then_quiet(sink: LiveTurn) -> None:
        await asyncio.sleep(0.4)
        await sink.record(1, "r")
        await asyncio.sleep(0.4)

    seen = await _read(record_then_quiet, idle=0.6)
    assert seen == [RecordEvent(1, "r"), END]


async def test_a_busy_reader_gets_no_cues() -> None:
    """The reader spends 0.5 s on each record, more than twice the idle period; a record
    comes every 0.3 s, so the next is always queued by then: it never waits, so it is
    never cued, however long it has been since it last read."""

    async def steady(sink: LiveTurn) -> None:
        for seq in range(3):
            await sink.record(seq, seq)
            await asyncio.sleep(0.3)

    seen = await _read(steady, idle=0.2, busy=0.5)
    assert seen == [RecordEvent(0, 0), RecordEvent(1, 1), RecordEvent(2, 2), END]


async def test_the_stream_leaves_no_timer_behind() -> None:
    loop = asyncio.get_running_loop()
    before = _timers(loop)

    async def quick(sink: LiveTurn) -> None:
        await sink.record(0, 0)

    assert await _read(quick, idle=0.05) == [RecordEvent(0, 0), END]
    assert _timers(loop) == before
    await asyncio.sleep(0.15)  # a timer left armed would re-arm itself, period after period
    assert _timers(loop) == before


async def test_a_reader_that_stops_early_leaves_no_timer_behind() -> None:
    loop = asyncio.get_running_loop()
    before = _timers(loop)

    async def slow(_: LiveTurn) -> None:
        await asyncio.sleep(0.3)

    live = LiveTurn(SessionId("0" * 32), claim_seq=1)
    task = asyncio.create_task(live.run(_ScriptedTurn(slow)))  # type: ignore[arg-type]
    events = live.events_or_idle(0.05)
    assert await anext(events) is None  # one cue, then the client goes away
    await events.aclose()
    assert _timers(loop) == before + 1  # the turn's own sleep, nothing of the stream's
    await task
