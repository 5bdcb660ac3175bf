"""The one transaction skeleton every store shares: load, decide, write.

Every port method is a command (domain/commands.py) carried out by `_execute`: in one
transaction, load the session's projection row, let the command decide, and write the plan
(infra/planning.py). A backend supplies `_execute` for its database (its transaction and
its four writes) and may replace a method with a faster path, which must then agree with
the domain row for row (tests/infra/test_parity.py checks that it does).
"""

from abc import ABC, abstractmethod
from typing import TypeVar

from domain.commands import (
    AppendRecord,
    ClaimTurn,
    CloseSession,
    Command,
    CommitTurn,
    ReleaseTurn,
    RenewClaim,
    StartSession,
)
from domain.decisions import ClaimGranted
from domain.events import ClaimRenewed, RecordAppended, RequestRefused, TurnCommitted, TurnReleased
from domain.identifiers import SessionId
from domain.outcomes import Contended
from domain.refusals import Refusal
from domain.state import SessionState

A = TypeVar("A")


class CommandStore(ABC):
    """A SessionStore (domain/ports.py) whose every method is one command, one transaction."""

    async def start(self, command: StartSession) -> ClaimGranted:
        return await self._execute(command)

    async def claim(self, command: ClaimTurn) -> ClaimGranted | Refusal:
        return await self._execute(command)

    async def renew(self, command: RenewClaim) -> ClaimRenewed | Contended:
        return await self._execute(command)

    async def append_record(self, command: AppendRecord) -> RecordAppended | Contended:
        return await self._execute(command)

    async def commit(self, command: CommitTurn) -> TurnCommitted | Contended:
        return await self._execute(command)

    async def release(self, command: ReleaseTurn) -> TurnReleased | None:
        return await self._execute(command)

    async def close(self, command: CloseSession) -> SessionState | Refusal:
        return await self._execute(command)

    @abstractmethod
    async def _execute(self, command: Command[A]) -> A:
        """Load the session, decide, write the plan: one transaction; the decision's answer."""

    @abstractmethod
    async def refuse(self, refused: RequestRefused) -> None:
        """Record a refusal decided without the session's state."""

    @abstractmethod
    async def load(self, session_id: SessionId) -> SessionState | None:
        """The session's projection as it is now."""
