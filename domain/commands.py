"""The commands a store carries out, one transaction each (the decider's `command`).

A command holds everything its decision needs besides the session's state, so a store's
whole job is: load the state, `command.decide(state)`, write what the decision says. The
rules themselves are in domain/decisions.py; this module only names the requests.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from domain import decisions
from domain.decisions import ClaimGranted, Decision
from domain.events import (
    ClaimRenewed,
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    TurnCommitted,
    TurnReleased,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import Contended, HandlerOutcome
from domain.refusals import Refusal
from domain.state import Claim, SessionState

A = TypeVar("A", covariant=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Generic[A]):
    """A request for one transaction on one session; `A` is what it answers."""

    session_id: SessionId
    at: datetime

    def decide(self, state: SessionState | None) -> Decision[A]:
        raise NotImplementedError  # pragma: no cover - every command below decides


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSession(Command[ClaimGranted]):
    """Mint a session; its start is also the claim of turn 1."""

    input: JsonObject
    lease: Lease

    def decide(self, state: SessionState | None) -> Decision[ClaimGranted]:
        return decisions.start_session(self, state)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimTurn(Command[ClaimGranted | Refusal]):
    """Validate a continue and claim the session for its turn, atomically."""

    presented: TokenDigest | None
    input: JsonObject
    lease: Lease

    def decide(self, state: SessionState | None) -> Decision[ClaimGranted | Refusal]:
        return decisions.claim_turn(self, state)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewClaim(Command[ClaimRenewed | Contended]):
    """Extend a running turn's lease."""

    claim: Claim
    lease: Lease

    def decide(self, state: SessionState | None) -> Decision[ClaimRenewed | Contended]:
        return decisions.renew_claim(self, state)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendRecord(Command[RecordAppended | Contended]):
    """Journal one record of a running turn."""

    claim: Claim
    record: JsonValue

    def decide(self, state: SessionState | None) -> Decision[RecordAppended | Contended]:
        return decisions.append_record(self, state)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitTurn(Command[TurnCommitted | Contended]):
    """Keep a turn's outcome: consume the token the claim was made with, issue the next."""

    claim: Claim
    consumed: TokenDigest | None  # the token presented at the claim; None on turn 1
    issued: TokenDigest
    outcome: HandlerOutcome
    sealed: str | None = None  # the issued token sealed under the consumed one

    def decide(self, state: SessionState | None) -> Decision[TurnCommitted | Contended]:
        return decisions.commit_turn(self, state)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseTurn(Command[TurnReleased | None]):
    """End a turn without committing; with `close`, also close the session."""

    claim: Claim
    cause: ReleaseCause
    error: str | None
    close: CloseCause | None = None

    def decide(self, state: SessionState | None) -> Decision[TurnReleased | None]:
        return decisions.release_turn(self, state)


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseSession(Command[SessionState | Refusal]):
    """Close a session for the holder of its current token."""

    presented: TokenDigest | None

    def decide(self, state: SessionState | None) -> Decision[SessionState | Refusal]:
        return decisions.close_session(self, state)
