"""Turns that run in tasks of their own, so a client that goes away cannot cancel them.

A turn is opened (every refusal is known by then) and launched here as a `LiveTurn`, whose
events a transport reads; if the client disconnects, the transport stops reading and the
turn runs on to its commit, whose outcome stays in the store.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Protocol

from baton.api.channel import Channel
from baton.api.errors import ApiError
from baton.api.reasons import INTERNAL, UNAVAILABLE
from baton.domain.identifiers import SessionId
from baton.domain.json import JsonValue
from baton.domain.ports import StoreUnavailable
from baton.domain.turn import OpenTurn, TurnCancelled, TurnFailed, TurnInvalid, TurnReply
from baton.domain.values import value

log = logging.getLogger("baton.turns")


@value
class RecordEvent:
    seq: int
    record: JsonValue


@value
class DeltaEvent:
    text: str


@value
class TurnCrashed:
    """The turn could not finish for a reason of ours (the database, a bug), not the handler's."""

    reason: str
    message: str


TurnEnd = TurnReply | TurnFailed | TurnCancelled | TurnInvalid | TurnCrashed
LiveEvent = RecordEvent | DeltaEvent | TurnEnd

# What a stream of a turn ends with when the replica stops under it: whatever the turn's
# fate, the client learns it from the session's events (PROTOCOL section 6.3).
STOPPED = TurnCrashed(UNAVAILABLE, "this replica stopped during the turn; read its events")
# What a stream that fell too far behind its turn ends with (the turn goes on and commits).
FELL_BEHIND = TurnCrashed(
    UNAVAILABLE,
    "this stream fell too far behind its turn and was dropped; the turn goes on: "
    "resume from the session's events",
)
DEFAULT_BUFFER = 1000  # live events a stream may fall behind before it is dropped
AT_CAPACITY = "this replica runs its maximum of {} turns at once; retry with the same token"


class TurnWatcher(Protocol):
    """What measures a turn (api/instruments.py): told when it is launched and how it ended."""

    def launched(self, opened: OpenTurn) -> None: ...

    def ended(self, end: TurnEnd) -> None: ...


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

    def __init__(self, *, max_turns: int | None = None, buffer: int = DEFAULT_BUFFER) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, OpenTurn] = {}
        self._max_turns = max_turns
        self._opening = 0  # admitted, still being opened (validated, claimed)
        self._buffer = buffer

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Admit one more turn to be opened and launched inside this block, or refuse it
        (503, Retry-After) before anything is claimed: this process runs at most
        `max_turns` at once. A turn being opened counts, so concurrent opens cannot
        overshoot the cap while they wait on the database."""
        if self._max_turns is not None and len(self._tasks) + self._opening >= self._max_turns:
            raise ApiError(UNAVAILABLE, AT_CAPACITY.format(self._max_turns))
        self._opening += 1
        try:
            yield
        finally:
            self._opening -= 1

    def launch(self, opened: OpenTurn, watch: TurnWatcher | None = None) -> "LiveTurn":
        live = LiveTurn(opened.session_id, opened.claim_seq, self._buffer)
        if watch is not None:
            watch.launched(opened)
        task = asyncio.get_running_loop().create_task(live.run(opened, watch))
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
    """One running turn: a TurnSink that queues what the handler emits, then its end.

    The queue is bounded: a reader that falls `buffer` events behind (a slow client, or one
    that went away mid-stream) is dropped, its stream ending with FELL_BEHIND, and what the
    handler emits after that is not kept. The handler never waits for a reader, and the
    turn commits as usual; its records and outcome stay readable from the session's events.
    """

    def __init__(self, session_id: SessionId, claim_seq: int, buffer: int = DEFAULT_BUFFER) -> None:
        self.session_id = session_id
        self.claim_seq = claim_seq  # a stream of this turn resumes from here
        # None: the reader's idle cue (events_or_idle), queued by its timer, never by the turn.
        self._queue: Channel[LiveEvent | None] = Channel()
        self._buffer = buffer
        self._dropped = False

    async def run(self, opened: OpenTurn, watch: TurnWatcher | None = None) -> None:
        try:
            end: TurnEnd = await opened.run(self)
        except asyncio.CancelledError:
            # The replica is stopping: the turn was released (or its commit's fate is
            # unknown), and the stream still gets an end, never silence.
            self._queue.put_nowait(STOPPED)
            if watch is not None:
                watch.ended(STOPPED)
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
        if watch is not None:
            watch.ended(end)
        if not self._dropped:
            self._queue.put_nowait(end)  # an end is never refused: a stream must end

    async def record(self, seq: int, record: JsonValue) -> None:
        self._put(RecordEvent(seq, record))

    async def delta(self, text: str) -> None:
        self._put(DeltaEvent(text))

    def _put(self, event: RecordEvent | DeltaEvent) -> None:
        if self._dropped:
            return
        if self._queue.qsize() >= self._buffer:
            self._dropped = True
            while not self._queue.empty():  # what the reader has not read goes with it
                self._queue.get_nowait()
            self._queue.put_nowait(FELL_BEHIND)
            return
        self._queue.put_nowait(event)

    async def events(self) -> AsyncIterator[LiveEvent]:
        """The turn's events up to and including its end."""
        while True:
            event = await self._queue.get()
            if event is None:  # an idle cue: only events_or_idle arms the timer that sends it
                continue
            yield event
            if isinstance(event, TurnEnd):
                return

    async def events_or_idle(self, idle_seconds: float) -> AsyncIterator[LiveEvent | None]:
        """As events(), with a None whenever this reader waited `idle_seconds` for nothing
        (a transport's cue to keep the line alive)."""
        cue = _IdleCue(self._queue, idle_seconds)
        try:
            while True:
                cue.waiting()
                event = await self._queue.get()
                cue.woken()
                yield event
                if isinstance(event, TurnEnd):
                    return
        finally:
            cue.stop()

    async def end(self) -> TurnEnd:
        """Wait for the turn's end, discarding its live events. (Not `async for` over
        events(): an async generator left before its end is finalized by the loop in a
        task of its own, one more for every buffered turn.)"""
        while True:
            event = await self._queue.get()
            if isinstance(event, TurnEnd):
                return event


class _IdleCue:
    """Queues None for a reader that has waited `seconds` for its queue.

    One timer for the whole stream, not one per event (asyncio.timeout around each get arms
    and cancels a timer for every record): it fires when the current wait could first have
    lasted `seconds`, and moves itself on if the reader was woken since."""

    def __init__(self, queue: Channel[LiveEvent | None], seconds: float) -> None:
        self._queue = queue
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None  # when the current wait began; None: not waiting
        self._timer = self._loop.call_at(self._loop.time() + seconds, self._check)

    def waiting(self) -> None:
        self._since = self._loop.time()

    def woken(self) -> None:
        self._since = None

    def stop(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        if self._since is not None and now - self._since >= self._seconds:
            # The reader, woken by this, starts its next wait before the timer fires again.
            self._queue.put_nowait(None)
            due = now + self._seconds
        else:  # woken since, or busy sending: due a full wait after the current one began
            due = (now if self._since is None else self._since) + self._seconds
        self._timer = self._loop.call_at(due, self._check)
