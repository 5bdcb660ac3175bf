"""Following a session's stored events (PROTOCOL section 6.3), from any replica.

The events come from SQL, so a stream resumed on another replica than the one running the
turn misses nothing but deltas (live only, never stored). Waiting for the next event is a
poll of the store, sped up by wake-ups: from this process's own writes at once, and on
PostgreSQL from other replicas' writes through NOTIFY while a follower is registered. A
missed wake-up delays a follower by one poll; it never loses an event.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

from baton.domain.events import Lease, SessionClosed, SessionEvent, TurnCommitted, TurnReleased
from baton.domain.identifiers import SessionId
from baton.domain.ports import SessionStore
from baton.domain.state import SessionState
from baton.domain.values import value
from baton.infra.notifier import Notifier, changed_within

FOLLOWER_TTL = timedelta(seconds=30)  # how long a registration wakes us; renewed before


@value
class Lapsed:
    """The followed turn's lease lapsed unrenewed: its replica stopped or lost the database.
    Its claim stands until a continue with the (still current) token takes it over."""

    turn: int


@value
class Following:
    store: SessionStore
    notifier: Notifier
    register: Callable[[SessionId, datetime], Awaitable[None]]  # wake me from other replicas
    clock: Callable[[], datetime]
    poll_seconds: float = 1.0

    async def replay(self, session_id: SessionId, after: int) -> list[SessionEvent]:
        """The session's stored events after seq `after`."""
        return await self.store.history(session_id, after=after)

    async def follow(
        self, session: SessionState, after: int
    ) -> AsyncIterator[list[SessionEvent] | Lapsed]:
        """The stored events after `after`, then, if a turn was in flight in `session` (as
        the read authorising this loaded it), its events as they are stored, up to its
        outcome or error (or the session's close), or up to its lease lapsing unrenewed:
        its replica is gone, and nothing would ever end the stream (Lapsed ends it).

        In batches, as each read of the store returns them: a record is void or not by the
        events stored after it, so a batch says so of its own records (api/wire.py) where a
        lone event could not."""
        session_id, claim, lease = session.session_id, session.claim, session.lease
        if claim is None:
            # Nothing in flight when asked: the replay is all there is, and no replica
            # needs to wake this reader (so it writes nothing).
            yield await self.store.history(session_id, after=after)
            return
        with self.notifier.watching(session_id) as changed:
            registered = await self._register(session_id, None)
            while True:
                changed.clear()
                batch = await self.store.history(session_id, after=after)
                ends = next((i for i, e in enumerate(batch) if _ends(e, claim.turn)), None)
                if ends is not None:
                    yield batch[: ends + 1]
                    return
                if batch:
                    after = batch[-1].seq
                    yield batch
                if lease is not None and lease.lapsed(self.clock()):
                    state = await self.store.load(session_id)
                    if state is None:
                        return  # removed meanwhile: nothing more will be stored
                    if state.claim == claim and _lapsed(state.lease, self.clock()):
                        yield Lapsed(claim.turn)
                        return
                    # Renewed, taken over, or ended (the next read brings the end).
                    lease = state.lease
                    continue
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


def _lapsed(lease: Lease | None, at: datetime) -> bool:
    return lease is None or lease.lapsed(at)


def _ends(event: SessionEvent, turn: int) -> bool:
    """Whether `event` ends the turn a stream follows."""
    if isinstance(event, TurnCommitted | TurnReleased):
        return event.turn == turn
    return isinstance(event, SessionClosed)
