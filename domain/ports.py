"""What the domain needs from storage. infra/ makes these real; tests use fakes."""

from typing import Protocol

from baton.domain.commands import (
    AppendRecord,
    ClaimTurn,
    CloseSession,
    CommitTurn,
    ReadSession,
    ReleaseTurn,
    RenewClaim,
    RequestCancel,
    StartSession,
)
from baton.domain.decisions import CancelAnswer, ClaimGranted
from baton.domain.events import (
    ClaimRenewed,
    RecordAppended,
    RequestRefused,
    SessionEvent,
    TurnCommitted,
    TurnReleased,
)
from baton.domain.identifiers import SessionId
from baton.domain.outcomes import Contended
from baton.domain.recovery import ReadAccess, Replay
from baton.domain.refusals import Refusal
from baton.domain.state import SessionState


class StoreUnavailable(Exception):
    """The database cannot be reached just now. A store or reader raises this, never a
    driver's own error, when a connection fails or the database is locked past its timeout;
    the caller answers 503 and the client retries with the same token."""


class SessionStore(Protocol):
    """One method per command, each one transaction on one session. Each loads the
    session's state, lets the command decide (domain/decisions.py), and writes what the
    decision says: the events and the projection they fold into, or the refusal.

    A refusal changes no state, so a store may record it in a transaction of its own after
    the one that decided it (the PostgreSQL store does: its refusals never lock the
    session's row). Everything else a decision writes lands in the transaction that decided
    it, or not at all."""

    async def start(self, command: StartSession) -> ClaimGranted | Replay | Refusal: ...

    async def claim(self, command: ClaimTurn) -> ClaimGranted | Replay | Refusal:
        """Validate and claim atomically, taking over a claim whose lease lapsed."""
        ...

    async def renew(self, command: RenewClaim) -> ClaimRenewed | Contended: ...

    async def append_record(self, command: AppendRecord) -> RecordAppended | Contended: ...

    async def commit(self, command: CommitTurn) -> TurnCommitted | Contended: ...

    async def release(self, command: ReleaseTurn) -> TurnReleased | None: ...

    async def close(self, command: CloseSession) -> SessionState | Refusal: ...

    async def request_cancel(self, command: RequestCancel) -> CancelAnswer | Refusal: ...

    async def read(self, command: ReadSession) -> ReadAccess | Refusal:
        """Authorise a read; a recovery with the consumed token is recorded as a fact."""
        ...

    async def history(
        self, session_id: SessionId, *, after: int = 0, turn: int | None = None
    ) -> list[SessionEvent]:
        """The session's events after seq `after` (only turn `turn`'s, if given), by seq."""
        ...

    async def refuse(self, refused: RequestRefused) -> None:
        """Record a refusal decided without the session's state (no such session)."""
        ...

    async def load(self, session_id: SessionId) -> SessionState | None:
        """The session's projection as it is now."""
        ...
