"""The commands a store carries out, one transaction each (the decider's `command`).

A command holds everything its decision needs besides what the store loads: the session's
state, and, for the commands that can recover a lost reply, the seal its `seal_lookup`
names (domain/recovery.py). A store's whole job is: load those, `command.decide(...)`,
write what the decision says. The rules are in domain/decisions.py and domain/holding.py.
"""

from datetime import datetime
from typing import Generic, TypeVar

from baton.domain import decisions, holding, session_decisions
from baton.domain.decisions import CancelAnswer, ClaimGranted, Decision
from baton.domain.events import (
    ClaimRenewed,
    CloseCause,
    Lease,
    RecordAppended,
    RecoveredVia,
    ReleaseCause,
    TurnCommitted,
    TurnReleased,
)
from baton.domain.identifiers import SessionId, TokenDigest
from baton.domain.json import JsonObject, JsonValue
from baton.domain.outcomes import Contended, HandlerOutcome
from baton.domain.recovery import Idempotency, ReadAccess, Replay, Seal
from baton.domain.refusals import Refusal
from baton.domain.state import Claim, SessionState
from baton.domain.values import value

A = TypeVar("A", covariant=True)


@value(kw_only=True)
class Command(Generic[A]):
    """A request for one transaction on one session; `A` is what it answers."""

    session_id: SessionId
    at: datetime
    # Who asks (domain/principals.py): the decision sees the session as they may, and
    # every event it records names them. None: the server authenticates no one.
    principal: str | None = None

    @property
    def seal_lookup(self) -> str | None:
        """The seal this command's decision needs, if any (its lookup digest)."""
        return None

    def subject(self, seal: Seal | None) -> SessionId:
        """The session whose state the decision needs (a keyed start: the one its key
        started already, if any)."""
        return self.session_id

    def decide(self, state: SessionState | None, seal: Seal | None = None) -> Decision[A]:
        raise NotImplementedError  # pragma: no cover - every command below decides


@value(kw_only=True)
class StartSession(Command[ClaimGranted | Replay | Refusal]):
    """Mint a session; its start is also the claim of turn 1."""

    input: JsonObject
    lease: Lease
    idempotency: Idempotency | None = None
    seal_until: datetime | None = None  # the recovery window's end, with a key

    @property
    def seal_lookup(self) -> str | None:
        return self.idempotency.key if self.idempotency else None

    def subject(self, seal: Seal | None) -> SessionId:
        return seal.session_id if seal is not None else self.session_id

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[ClaimGranted | Replay | Refusal]:
        return decisions.start_session(self, state, seal)


@value(kw_only=True)
class ClaimTurn(Command[ClaimGranted | Replay | Refusal]):
    """Validate a continue and claim the session for its turn, atomically."""

    presented: TokenDigest | None
    input: JsonObject
    lease: Lease
    idempotency: Idempotency | None = None

    @property
    def seal_lookup(self) -> str | None:
        # Only a keyed retry can be answered from a seal (PROTOCOL section 6.4).
        return self.presented if self.idempotency else None

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[ClaimGranted | Replay | Refusal]:
        return decisions.claim_turn(self, state, seal)


@value(kw_only=True)
class RenewClaim(Command[ClaimRenewed | Contended]):
    """Extend a running turn's lease."""

    claim: Claim
    lease: Lease

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[ClaimRenewed | Contended]:
        return holding.renew_claim(self, state)


@value(kw_only=True)
class AppendRecord(Command[RecordAppended | Contended]):
    """Journal one record of a running turn."""

    claim: Claim
    record: JsonValue

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[RecordAppended | Contended]:
        return holding.append_record(self, state)


@value(kw_only=True)
class CommitTurn(Command[TurnCommitted | Contended]):
    """Keep a turn's outcome: consume the token the claim was made with, issue the next."""

    claim: Claim
    consumed: TokenDigest | None  # the token presented at the claim; None on turn 1
    issued: TokenDigest
    outcome: HandlerOutcome
    seal: Seal | None = None  # the issued token, sealed for recovery

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[TurnCommitted | Contended]:
        return holding.commit_turn(self, state)


@value(kw_only=True)
class ReleaseTurn(Command[TurnReleased | None]):
    """End a turn without committing; with `close`, also close the session."""

    claim: Claim
    cause: ReleaseCause
    error: str | None
    close: CloseCause | None = None

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[TurnReleased | None]:
        return holding.release_turn(self, state)


@value(kw_only=True)
class CloseSession(Command[SessionState | Refusal]):
    """Close a session for the holder of its current token."""

    presented: TokenDigest | None

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[SessionState | Refusal]:
        return session_decisions.close_session(self, state)


@value(kw_only=True)
class RequestCancel(Command[CancelAnswer | Refusal]):
    """Ask the running turn to stop, with the current token (PROTOCOL section 6.5)."""

    presented: TokenDigest | None

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[CancelAnswer | Refusal]:
        return session_decisions.request_cancel(self, state)


@value(kw_only=True)
class ReadSession(Command[ReadAccess | Refusal]):
    """Authorise a read of the session (and of its events) with a presented token."""

    presented: TokenDigest | None
    via: RecoveredVia = RecoveredVia.READ  # how a recovery with it is recorded

    @property
    def seal_lookup(self) -> str | None:
        return self.presented

    def decide(
        self, state: SessionState | None, seal: Seal | None = None
    ) -> Decision[ReadAccess | Refusal]:
        return session_decisions.read_session(self, state, seal)
