"""The session store as the turn driver sees it, each operation timed (and, for a turn's own
operations, traced): a decorator around whichever store infra opened, so neither the
domain nor the stores know metrics exist."""

from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, TypeVar

from baton.api.metrics import Metrics
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
from baton.domain.ports import SessionStore
from baton.domain.recovery import ReadAccess, Replay
from baton.domain.refusals import Refusal
from baton.domain.state import SessionState

if TYPE_CHECKING:
    from baton.api.tracing import Tracing

R = TypeVar("R")

OPERATIONS = (
    "start",
    "claim",
    "renew",
    "append_record",
    "commit",
    "release",
    "close",
    "request_cancel",
    "read",
    "history",
    "refuse",
    "load",
)


class MeasuredStore:
    def __init__(self, store: SessionStore, metrics: Metrics, tracing: "Tracing | None") -> None:
        self._store = store
        self._seconds = {operation: metrics.store_seconds[operation] for operation in OPERATIONS}
        self._takeovers = metrics.lease_takeovers
        self._tracing = tracing

    async def _measured(self, operation: str, call: Awaitable[R]) -> R:
        step = self._tracing.step(operation) if self._tracing is not None else None
        began = perf_counter()
        try:
            if step is None:
                return await call
            with step:
                return await call
        finally:
            self._seconds[operation].observe(perf_counter() - began)

    async def start(self, command: StartSession) -> ClaimGranted | Replay | Refusal:
        return await self._measured("start", self._store.start(command))

    async def claim(self, command: ClaimTurn) -> ClaimGranted | Replay | Refusal:
        granted = await self._measured("claim", self._store.claim(command))
        if isinstance(granted, ClaimGranted) and granted.took_over:
            self._takeovers.inc()
        return granted

    async def renew(self, command: RenewClaim) -> ClaimRenewed | Contended:
        return await self._measured("renew", self._store.renew(command))

    async def append_record(self, command: AppendRecord) -> RecordAppended | Contended:
        return await self._measured("append_record", self._store.append_record(command))

    async def commit(self, command: CommitTurn) -> TurnCommitted | Contended:
        return await self._measured("commit", self._store.commit(command))

    async def release(self, command: ReleaseTurn) -> TurnReleased | None:
        return await self._measured("release", self._store.release(command))

    async def close(self, command: CloseSession) -> SessionState | Refusal:
        return await self._measured("close", self._store.close(command))

    async def request_cancel(self, command: RequestCancel) -> CancelAnswer | Refusal:
        return await self._measured("request_cancel", self._store.request_cancel(command))

    async def read(self, command: ReadSession) -> ReadAccess | Refusal:
        return await self._measured("read", self._store.read(command))

    async def history(
        self, session_id: SessionId, *, after: int = 0, turn: int | None = None
    ) -> list[SessionEvent]:
        return await self._measured(
            "history", self._store.history(session_id, after=after, turn=turn)
        )

    async def refuse(self, refused: RequestRefused) -> None:
        await self._measured("refuse", self._store.refuse(refused))

    async def load(self, session_id: SessionId) -> SessionState | None:
        return await self._measured("load", self._store.load(session_id))
