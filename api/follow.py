"""Following a session's stored events (PROTOCOL section 6.3), from any replica.

The events come from SQL, so a stream resumed on another replica than the one running the
turn misses nothing but deltas (live only, never stored). Waiting for the next event is a
poll of the store, sped up by wake-ups: from this process's own writes at once, and on
PostgreSQL from other replicas' writes through NOTIFY while a follower is registered. A
missed wake-up delays a follower by one poll; it never loses an event.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.events import SessionClosed, SessionEvent, TurnCommitted, TurnReleased
from domain.identifiers import SessionId
from domain.ports import SessionStore
from infra.notifier import Notifier, changed_within

FOLLOWER_TTL = timedelta(seconds=30)  # how long a registration wakes us; renewed before


@dataclass(frozen=True, slots=True)
class Following:
    store: SessionStore
    notifier: Notifier
    register: Callable[[SessionId, datetime], Awaitable[None]]  # wake me from other replicas
    clock: Callable[[], datetime]
    poll_seconds: float = 1.0

    async def replay(self, session_id: SessionId, after: int) -> list[SessionEvent]:
        """The session's stored events after seq `after`."""
        return await self.store.history(session_id, after=after)

    async def follow(self, session_id: SessionId, after: int) -> AsyncIterator[SessionEvent]:
        """The stored events after `after`, then, if a turn is in flight, its events as they
        are stored, up to its outcome or error (or the session's close)."""
        with self.notifier.watching(session_id) as changed:
            registered = await self._register(session_id, None)
            state = await self.store.load(session_id)
            following = state.claim.turn if state is not None and state.claim else None
            while True:
                changed.clear()
                for event in await self.store.history(session_id, after=after):
                    after = event.seq
                    yield event
                    if following is not None and _ends(event, following):
                        return
                if following is None:
                    return  # nothing in flight when asked: the replay is all there is
                await changed_within(changed, self.poll_seconds)
                registered = await self._register(session_id, registered)

    async def _register(self, session_id: SessionId, until: datetime | None) -> datetime:
        """Keep other replicas waking this follower while it follows."""
        now = self.clock()
        if until is not None and until - now > FOLLOWER_TTL / 3:
            return until
        until = now + FOLLOWER_TTL
        await self.register(session_id, until)
        return until


def _ends(event: SessionEvent, turn: int) -> bool:
    """Whether `event` ends the turn a stream follows."""
    if isinstance(event, TurnCommitted | TurnReleased):
        return event.turn == turn
    return isinstance(event, SessionClosed)
