"""An in-memory SessionStore with the SQL store's semantics, and the other injected parts.

The store is the skeleton every store shares (infra/command_store.py): each command decides
on the projection and appends the events it folds into without awaiting in between, so on
one event loop each method is atomic, as a transaction of the SQL stores is. The event
table's unique keys are checked as well: a fake that let a token be consumed twice would
hide exactly the bug the protocol tests look for. The store contract suite
(tests/infra/test_store.py) runs against it as a third backend.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from baton.domain.commands import Command
from baton.domain.decisions import ClaimGranted
from baton.domain.events import (
    Event,
    Lease,
    Recovered,
    RequestRefused,
    SessionEvent,
    TurnClaimed,
    TurnCommitted,
    kind_of,
)
from baton.domain.identifiers import SessionId, TokenDigest
from baton.domain.json import JsonValue
from baton.domain.recovery import Forget, Seal
from baton.domain.state import SessionState, fold
from baton.infra.command_store import CommandStore

A = TypeVar("A")
K = TypeVar("K")


class UniqueViolation(Exception):
    """Two events took one unique key: the rules let through what the database would not."""


class InMemorySessionStore(CommandStore):
    """The store skeleton (infra/command_store.py) over dicts: every command loads the
    state, decides, and appends what the decision says, without awaiting in between."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.sessions: dict[SessionId, SessionState] = {}
        self.violations: list[str] = []  # kept too, in case a caller swallows the exception
        self.seals: dict[str, Seal] = {}
        self._seqs: set[tuple[SessionId, int]] = set()
        self._consumed: set[TokenDigest] = set()
        self._issued: set[TokenDigest] = set()

    # ------------------------------------------------------------------ the port

    async def _execute(self, command: Command[A]) -> A:
        seal = self.seals.get(command.seal_lookup) if command.seal_lookup else None
        decision = command.decide(self.sessions.get(command.subject(seal)), seal)
        if decision.side_event is not None:
            self.events.append(decision.side_event)
        if decision.after is not None:
            self._append(decision.events, decision.after)
        if decision.forget is not None and decision.after is not None:
            self._forget(decision.after.session_id, decision.forget)
        if decision.seal is not None:
            self.seals[decision.seal.lookup] = decision.seal
        return decision.answer

    def _forget(self, session_id: SessionId, which: Forget) -> None:
        for lookup, seal in list(self.seals.items()):
            if seal.session_id == session_id and (which is Forget.ALL or seal.turn > 1):
                del self.seals[lookup]

    async def history(
        self, session_id: SessionId, *, after: int = 0, turn: int | None = None
    ) -> list[SessionEvent]:
        mine = self.session_events(session_id)
        return [e for e in mine if e.seq > after and (turn is None or e.turn == turn)]

    async def load(self, session_id: SessionId) -> SessionState | None:
        return self.sessions.get(session_id)

    async def refuse(self, refused: RequestRefused) -> None:
        self.events.append(refused)

    # ------------------------------------------------------------------ for tests

    def takeover(self, session_id: SessionId, at: datetime) -> ClaimGranted:
        """Move the session's claim to a new one, as a lease expiry and a retry would.

        The turn that held the old claim can no longer append, commit or release.
        """
        state = self.sessions[session_id]
        if state.claim is None:
            raise ValueError(f"session {session_id} has no claim to take over")
        taken = TurnClaimed(
            session_id=session_id,
            seq=state.version + 1,
            turn=state.claim.turn,
            input={},
            lease=Lease("someone-else", at),
            at=at,
        )
        after = fold([taken], state)
        self._append((taken,), after)
        return ClaimGranted(taken, after)

    def session_events(self, session_id: SessionId) -> list[SessionEvent]:
        return [
            event
            for event in self.events
            if not isinstance(event, RequestRefused | Recovered) and event.session_id == session_id
        ]

    def written(self, session_id: SessionId) -> list[tuple[str, str | None]]:
        """(kind, consumed digest) of each of the session's events, refusals included, in
        the order they were written."""
        mine = [event for event in self.events if event.session_id == session_id]
        return [(kind_of(e), e.consumed if isinstance(e, TurnCommitted) else None) for e in mine]

    def kinds(self, session_id: SessionId) -> list[str]:
        return [kind_of(event) for event in self.session_events(session_id)]

    def refusals(self) -> list[RequestRefused]:
        return [event for event in self.events if isinstance(event, RequestRefused)]

    def committed(self, session_id: SessionId) -> list[TurnCommitted]:
        events = self.session_events(session_id)
        return [event for event in events if isinstance(event, TurnCommitted)]

    # ------------------------------------------------------------------ the "table"

    def _append(self, new: Sequence[SessionEvent], after: SessionState) -> None:
        """Check the unique keys, append, and write the projection the events fold into."""
        for event in new:
            self._take((event.session_id, event.seq), self._seqs, "seq")
            if isinstance(event, TurnCommitted):
                if event.consumed is not None:
                    self._take(event.consumed, self._consumed, "consumed digest")
                self._take(event.issued, self._issued, "issued digest")
        self.events.extend(new)
        self.sessions[after.session_id] = after

    def _take(self, key: K, taken: set[K], what: str) -> None:
        if key in taken:
            self._violate(f"{what} {key!r} is already taken")
        taken.add(key)

    def _violate(self, message: str) -> None:
        self.violations.append(message)
        raise UniqueViolation(message)


class FakeClock:
    """An aware UTC clock that moves one millisecond every time it is read."""

    def __init__(self, start: datetime = datetime(2025, 1, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


class SeededRandom:
    """Deterministic bytes that never repeat: SHA-256 of a seed and a counter."""

    def __init__(self, seed: str = "baton") -> None:
        self._seed = seed
        self._count = 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            self._count += 1
            out += hashlib.sha256(f"{self._seed}:{self._count}".encode()).digest()
        return out[:size]


@dataclass
class RecordingSink:
    """A transport that keeps what it was given."""

    records: list[tuple[int, JsonValue]] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)

    async def record(self, seq: int, record: JsonValue) -> None:
        self.records.append((seq, record))

    async def delta(self, text: str) -> None:
        self.deltas.append(text)
