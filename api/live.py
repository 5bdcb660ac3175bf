"""Turns that run in tasks of their own, so a client that goes away cannot cancel them.

A turn is opened (every refusal is known by then) and launched here as a `LiveTurn`, whose
events a transport reads; if the client disconnects, the transport stops reading and the
turn runs on to its commit, whose outcome stays in the store.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from api.reasons import INTERNAL, UNAVAILABLE
from domain.identifiers import SessionId
from domain.json import JsonValue
from domain.ports import StoreUnavailable
from domain.turn import OpenTurn, TurnCancelled, TurnFailed, TurnInvalid, TurnReply

log = logging.getLogger("baton.turns")


@dataclass(frozen=True, slots=True)
class RecordEvent:
    seq: int
    record: JsonValue


@dataclass(frozen=True, slots=True)
class DeltaEvent:
    text: str


@dataclass(frozen=True, slots=True)
class TurnCrashed:
    """The turn could not finish for a reason of ours (the database, a bug), not the handler's."""

    reason: str
    message: str


TurnEnd = TurnReply | TurnFailed | TurnCancelled | TurnInvalid | TurnCrashed
LiveEvent = RecordEvent | DeltaEvent | TurnEnd

# What a stream of a turn ends with when the replica stops under it: whatever the turn's
# fate, the client learns it from the session's events (PROTOCOL section 6.3).
STOPPED = TurnCrashed(UNAVAILABLE, "this replica stopped during the turn; read its events")


def turn_status(end: TurnEnd) -> str:
    """How a turn ended, in one word, for metrics."""
    if isinstance(end, TurnReply):
        return end.outcome.status
    if isinstance(end, TurnCancelled):
        return "cancelled"
    if isinstance(end, TurnInvalid):
        return "invalid-input"
    return "failed" if isinstance(end, TurnFailed) else "crashed"


class TurnRunner:
    """Launches turns in tasks of their own and keeps every one of them, so none is
    garbage-collected mid-turn and shutdown can wait for them; and finds the turn this
    process runs for a session, to stop it when its holder asks."""

    def __init__(self, on_end: Callable[[TurnEnd], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, OpenTurn] = {}
        self._on_end = on_end

    def launch(self, opened: OpenTurn) -> "LiveTurn":
        live = LiveTurn(opened.session_id, opened.claim_seq)
        task = asyncio.get_running_loop().create_task(live.run(opened, self._on_end))
        self._tasks.add(task)
        self._running[opened.session_id] = opened
        task.add_done_callback(lambda done: self._ended(done, opened))
        return live

    def _ended(self, task: "asyncio.Task[None]", opened: OpenTurn) -> None:
        self._tasks.discard(task)
        if self._running.get(opened.session_id) is opened:
            del self._running[opened.session_id]

    def cancel(self, session_id: str) -> bool:
        """Stop the turn this process runs for the session, if it runs one."""
        opened = self._running.get(session_id)
        if opened is not None:
            opened.cancel()
        return opened is not None

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace_seconds: float) -> None:
        """Let running turns finish; cancel what is left after the grace period (a cancelled
        turn releases its claim, so its token stays valid)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class LiveTurn:
    """One running turn: a TurnSink that queues what the handler emits, then its end."""

    def __init__(self, session_id: SessionId, claim_seq: int) -> None:
        self.session_id = session_id
        self.claim_seq = claim_seq  # a stream of this turn resumes from here
        self._queue: asyncio.Queue[LiveEvent] = asyncio.Queue()

    async def run(self, opened: OpenTurn, on_end: Callable[[TurnEnd], None] | None) -> None:
        try:
            end: TurnEnd = await opened.run(self)
        except asyncio.CancelledError:
            # The replica is stopping: the turn was released (or its commit's fate is
            # unknown), and the stream still gets an end, never silence.
            self._queue.put_nowait(STOPPED)
            raise
        except StoreUnavailable as error:
            # Whether the commit landed is unknown: the client retries with the same token
            # and is answered by the store (or, if it did commit, recovers the sealed token).
            log.warning("turn %s of session %s: %s", opened.number, opened.session_id, error)
            end = TurnCrashed(UNAVAILABLE, "the database became unavailable during the turn")
        except Exception:
            log.exception("turn %s of session %s crashed", opened.number, opened.session_id)
            # Never the exception's name or text: it is the server's, not the client's.
            end = TurnCrashed(INTERNAL, "the turn could not be completed (a server error)")
        if on_end is not None:
            on_end(end)
        self._queue.put_nowait(end)

    async def record(self, seq: int, record: JsonValue) -> None:
        self._queue.put_nowait(RecordEvent(seq, record))

    async def delta(self, text: str) -> None:
        self._queue.put_nowait(DeltaEvent(text))

    async def events(self) -> AsyncIterator[LiveEvent]:
        """The turn's events up to and including its end."""
        while True:
            event = await self._queue.get()
            yield event
            if isinstance(event, TurnEnd):
                return

    async def events_or_idle(self, idle_seconds: float) -> AsyncIterator[LiveEvent | None]:
        """As events(), with a None whenever nothing happened for `idle_seconds` (a
        transport's cue to keep the line alive)."""
        while True:
            try:
                # asyncio.timeout costs a timer; wait_for would cost a Task per event.
                async with asyncio.timeout(idle_seconds):
                    event = await self._queue.get()
            except TimeoutError:
                yield None
                continue
            yield event
            if isinstance(event, TurnEnd):
                return

    async def end(self) -> TurnEnd:
        """Wait for the turn's end, discarding its live events."""
        async for event in self.events():
            if isinstance(event, TurnEnd):
                return event
        raise RuntimeError("a turn's events stopped before its end")  # pragma: no cover
