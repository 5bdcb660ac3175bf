"""An in-memory SessionStore with the SQL store's semantics, and the other injected parts.

Every store method decides with `domain.decisions` on the projection and appends the events
it folds into without awaiting in between, so on one event loop each method is atomic, as a
transaction of the SQL stores is. The event table's unique keys are checked as well: a fake
that let a token be consumed twice would hide exactly the bug the protocol tests look for.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from domain import decisions
from domain.events import (
    ClaimRenewed,
    CloseCause,
    Event,
    Lease,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    kind_of,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import Contended, HandlerOutcome
from domain.ports import ClaimGranted
from domain.refusals import Refusal
from domain.state import Claim, SessionState, fold

K = TypeVar("K")


class UniqueViolation(Exception):
    """Two events took one unique key: the rules let through what the database would not."""


class InMemorySessionStore:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.sessions: dict[SessionId, SessionState] = {}
        self.violations: list[str] = []  # kept too, in case a caller swallows the exception
        self._seqs: set[tuple[SessionId, int]] = set()
        self._consumed: set[TokenDigest] = set()
        self._issued: set[TokenDigest] = set()

    # ------------------------------------------------------------------ the port

    async def start(self, started: SessionStarted) -> ClaimGranted:
        if started.session_id in self.sessions:
            self._violate(f"session {started.session_id} already exists")
        return ClaimGranted(started, self._append(None, [started]))

    async def claim(
        self,
        session_id: SessionId,
        presented: TokenDigest | None,
        input: JsonObject,
        at: datetime,
        lease: Lease,
    ) -> ClaimGranted | Refusal:
        state = self.sessions.get(session_id)
        decision = decisions.claim_turn(
            state, session_id=session_id, presented=presented, input=input, lease=lease, at=at
        )
        if isinstance(decision, Refusal):
            self.events.append(
                decisions.record_refusal(decision, state=state, presented_id=session_id, at=at)
            )
            return decision
        return ClaimGranted(decision.claimed, self._append(state, decision.events))

    async def renew(
        self, session_id: SessionId, claim: Claim, lease: Lease, at: datetime
    ) -> ClaimRenewed | Contended:
        state = self.sessions.get(session_id)
        decision = decisions.renew_claim(state, claim, lease, at)
        if isinstance(decision, ClaimRenewed):
            self._append(state, [decision])
        return decision

    async def append_record(
        self, session_id: SessionId, claim: Claim, record: JsonValue, at: datetime
    ) -> RecordAppended | Contended:
        state = self.sessions.get(session_id)
        decision = decisions.append_record(state, claim, record, at)
        if isinstance(decision, RecordAppended):
            self._append(state, [decision])
        return decision

    async def commit(
        self,
        session_id: SessionId,
        claim: Claim,
        outcome: HandlerOutcome,
        issued: TokenDigest,
        at: datetime,
        *,
        consumed: TokenDigest | None,
        sealed: str | None = None,
    ) -> TurnCommitted | Contended:
        state = self.sessions.get(session_id)
        if state is not None and state.token_digest != consumed:
            return Contended(current=state.version)
        decision = decisions.commit_turn(state, claim, outcome, issued, at, sealed=sealed)
        if isinstance(decision, TurnCommitted):
            self._append(state, [decision])
        return decision

    async def release(
        self,
        session_id: SessionId,
        claim: Claim,
        cause: ReleaseCause,
        error: str | None,
        at: datetime,
        *,
        close: CloseCause | None = None,
    ) -> None:
        state = self.sessions.get(session_id)
        released = decisions.release_turn(state, claim, cause, error, at)
        if state is None or released is None:
            return  # the claim was taken over; releasing it is no longer ours to do
        ended: list[SessionEvent] = [released]
        if close is not None:
            ended.append(decisions.close_session(fold(ended, state), close, at, turn=claim.turn))
        self._append(state, ended)

    async def close_session(
        self, session_id: SessionId, presented: TokenDigest | None, at: datetime
    ) -> SessionState | Refusal:
        state = self.sessions.get(session_id)
        decision = decisions.close_by_client(
            state, session_id=session_id, presented=presented, at=at
        )
        if isinstance(decision, Refusal):
            self.events.append(
                decisions.record_refusal(decision, state=state, presented_id=session_id, at=at)
            )
            return decision
        return self._append(state, decision)

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
        return ClaimGranted(taken, self._append(state, [taken]))

    def session_events(self, session_id: SessionId) -> list[SessionEvent]:
        return [
            event
            for event in self.events
            if not isinstance(event, RequestRefused) and event.session_id == session_id
        ]

    def kinds(self, session_id: SessionId) -> list[str]:
        return [kind_of(event) for event in self.session_events(session_id)]

    def refusals(self) -> list[RequestRefused]:
        return [event for event in self.events if isinstance(event, RequestRefused)]

    def committed(self, session_id: SessionId) -> list[TurnCommitted]:
        events = self.session_events(session_id)
        return [event for event in events if isinstance(event, TurnCommitted)]

    # ------------------------------------------------------------------ the "table"

    def _append(self, state: SessionState | None, new: Sequence[SessionEvent]) -> SessionState:
        """Check the unique keys, append, and write the projection the events fold into."""
        for event in new:
            self._take((event.session_id, event.seq), self._seqs, "seq")
            if isinstance(event, TurnCommitted):
                if event.consumed is not None:
                    self._take(event.consumed, self._consumed, "consumed digest")
                self._take(event.issued, self._issued, "issued digest")
        self.events.extend(new)
        after = fold(new, state)
        self.sessions[after.session_id] = after
        return after

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
