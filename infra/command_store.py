"""The one transaction skeleton every store shares: load, decide, write.

Every port method is a command (domain/commands.py) carried out by `_execute`: in one
transaction, load the session's projection row, let the command decide, and write the plan
(infra/planning.py). A backend supplies `_execute` for its database (its transaction and
its four writes) and may replace a method with a faster path, which must then agree with
the domain row for row (tests/infra/test_parity.py checks that it does).
"""

from abc import ABC, abstractmethod
from typing import TypeVar

from baton.domain.commands import (
    AppendRecord,
    ClaimTurn,
    CloseSession,
    Command,
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
from baton.infra.notifier import Notifier

A = TypeVar("A")


class CommandStore(ABC):
    """A SessionStore (domain/ports.py) whose every method is one command, one transaction.
    After each, whoever waits on the session in this process is woken (infra/notifier.py)."""

    notifier: Notifier | None = None

    def woke(self, session_id: SessionId) -> None:
        if self.notifier is not None:
            self.notifier.wake(session_id)

    async def _run(self, command: Command[A]) -> A:
        answer = await self._execute(command)
        self.woke(command.session_id)
        return answer

    async def start(self, command: StartSession) -> ClaimGranted | Replay | Refusal:
        return await self._run(command)

    async def claim(self, command: ClaimTurn) -> ClaimGranted | Replay | Refusal:
        return await self._run(command)

    async def renew(self, command: RenewClaim) -> ClaimRenewed | Contended:
        return await self._run(command)

    async def append_record(self, command: AppendRecord) -> RecordAppended | Contended:
        return await self._run(command)

    async def commit(self, command: CommitTurn) -> TurnCommitted | Contended:
        return await self._run(command)

    async def release(self, command: ReleaseTurn) -> TurnReleased | None:
        return await self._run(command)

    async def close(self, command: CloseSession) -> SessionState | Refusal:
        return await self._run(command)

    async def request_cancel(self, command: RequestCancel) -> CancelAnswer | Refusal:
        return await self._run(command)

    async def read(self, command: ReadSession) -> ReadAccess | Refusal:
        return await self._run(command)

    @abstractmethod
    async def _execute(self, command: Command[A]) -> A:
        """Load the seal the command asks for (`command.seal_lookup`) and the state of the
        session it names (`command.subject(seal)`), decide, write the plan: one
        transaction; the decision's answer."""

    @abstractmethod
    async def refuse(self, refused: RequestRefused) -> None:
        """Record a refusal decided without the session's state."""

    @abstractmethod
    async def load(self, session_id: SessionId) -> SessionState | None:
        """The session's projection as it is now."""

    @abstractmethod
    async def history(
        self, session_id: SessionId, *, after: int = 0, turn: int | None = None
    ) -> list[SessionEvent]:
        """The session's events after seq `after` (only turn `turn`'s, if given), by seq."""
