"""What the domain needs from storage. infra/ makes these real; tests use fakes."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.events import (
    ClaimRenewed,
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import Contended, HandlerOutcome
from domain.refusals import Refusal
from domain.state import Claim, SessionState


class StoreUnavailable(Exception):
    """The database cannot be reached just now. A store raises this, never a driver's own
    error, when a connection fails or the database is locked past its timeout; the caller
    answers 503 and the client retries with the same token."""


@dataclass(frozen=True, slots=True)
class ClaimGranted:
    """A claim that landed, with the session's state right after it."""

    event: SessionStarted | TurnClaimed
    state: SessionState

    @property
    def claim(self) -> Claim:
        return Claim(turn=self.event.turn, seq=self.event.seq)


class SessionStore(Protocol):
    """One method per transaction. Each decides with the functions of domain.decisions on
    the session's state as the transaction sees it, so the rules live in one place."""

    async def start(self, started: SessionStarted) -> ClaimGranted: ...

    async def claim(
        self,
        session_id: SessionId,
        presented: TokenDigest | None,
        input: JsonObject,
        at: datetime,
        lease: Lease,
    ) -> ClaimGranted | Refusal:
        """Validate and claim atomically (taking over a claim whose lease lapsed); a refusal
        is recorded in the same transaction."""
        ...

    async def renew(
        self, session_id: SessionId, claim: Claim, lease: Lease, at: datetime
    ) -> ClaimRenewed | Contended:
        """Extend a running turn's lease while the session is still its own."""
        ...

    async def append_record(
        self, session_id: SessionId, claim: Claim, record: JsonValue, at: datetime
    ) -> RecordAppended | Contended: ...

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
        """Consume `consumed` (the token the claim was made with; None on turn 1) and issue
        `issued`, if the claim still holds."""
        ...

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
        """End the turn without committing; with `close`, also close the session."""
        ...

    async def close_session(
        self, session_id: SessionId, presented: TokenDigest | None, at: datetime
    ) -> SessionState | Refusal:
        """Close the session for the holder of its current token (decisions.close_by_client);
        a refusal is recorded in the same transaction."""
        ...

    async def refuse(self, refused: RequestRefused) -> None:
        """Record a refusal decided without the session's state (no such session)."""
        ...

    async def load(self, session_id: SessionId) -> SessionState | None:
        """The session's projection as it is now."""
        ...
