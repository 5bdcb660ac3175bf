"""The PostgreSQL session store: the shared skeleton, and one round trip on the hot path.

Every command can run as the skeleton of infra/command_store.py: in one transaction, lock
the session's row (SELECT ... FOR UPDATE), let the command decide, write the plan. The rare
commands (release, close, a takeover) do exactly that; a start writes its plan in one
statement (a new session has nothing to lock).

The hot ones (claim, record, renewal, commit) have fast paths: one conditional statement
each, sent in autocommit mode, so the statement is the transaction and the server does the
work in one round trip. Each changes the session only if it is exactly as the domain's
decision needs it (the presented token is current and no turn holds the claim; or this turn
still holds the claim and the token it consumes is current), and appends its event in the
same statement through a data-modifying CTE, linked into the hash chain by `sha256()` in
SQL (infra/postgres_sql.py). They mirror domain/decisions.py and domain.state.evolve, and
tests/infra/test_parity.py drives the same histories through both and compares the events
and projection rows they leave. When a fast path's condition fails, the domain decides why
on a fresh read.

A refusal is recorded in a statement of its own after the read that decided it (the port
allows this: a refusal changes no state), so that refusing never locks the session's row.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from domain.commands import AppendRecord, ClaimTurn, Command, CommitTurn, RenewClaim, StartSession
from domain.decisions import ClaimGranted
from domain.events import ClaimRenewed, RecordAppended, RequestRefused, TurnCommitted
from domain.identifiers import SessionId
from domain.outcomes import Contended
from domain.refusals import Refusal
from domain.state import SessionState
from infra.command_store import CommandStore
from infra.conflict import Conflict, retrying
from infra.planning import Loaded, plan
from infra.postgres_pool import PostgresPool, unavailable_on_outage
from infra.postgres_writes import (
    fast_claim,
    fast_commit,
    fast_record,
    fast_renew,
    load,
    record_refusal,
    write,
)

T = TypeVar("T")
C = TypeVar("C", bound=Command[Any])


class PostgresSessionStore(CommandStore):
    def __init__(self, pool: PostgresPool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ the skeleton

    @unavailable_on_outage
    async def _execute(self, command: Command[T]) -> T:
        async def attempt() -> T:
            async with self.pool.db.acquire() as conn, conn.transaction():
                loaded = await load(conn, command.session_id, lock=True)
                decision = command.decide(loaded.state)
                await write(conn, plan(loaded, decision))
                return decision.answer

        return await retrying(attempt, f"session {command.session_id}")

    @unavailable_on_outage
    async def refuse(self, refused: RequestRefused) -> None:
        async with self.pool.db.acquire() as conn:
            await record_refusal(conn, refused)

    @unavailable_on_outage
    async def load(self, session_id: SessionId) -> SessionState | None:
        async with self.pool.db.acquire() as conn:
            return (await load(conn, session_id)).state

    # ------------------------------------------------------------------ faster paths

    @unavailable_on_outage
    async def start(self, command: StartSession) -> ClaimGranted:
        decision = command.decide(None)
        async with self.pool.db.acquire() as conn:
            await write(conn, plan(Loaded(None), decision))
        return decision.answer

    @unavailable_on_outage
    async def claim(self, command: ClaimTurn) -> ClaimGranted | Refusal:
        async with self.pool.db.acquire() as conn:
            if command.presented is not None:
                try:
                    granted = await fast_claim(conn, command)
                except Conflict:
                    return await self._execute(command)
                if granted is not None:
                    return granted
            # Not claimed at once: read the session and let the domain say why.
            decision = command.decide((await load(conn, command.session_id)).state)
            if decision.refused is not None:
                await record_refusal(conn, decision.refused)
                return decision.answer
        # A claim after all: a lapsed lease to take over, or a turn that ended meanwhile.
        return await self._execute(command)

    async def renew(self, command: RenewClaim) -> ClaimRenewed | Contended:
        return await self._held(command, fast_renew)

    async def append_record(self, command: AppendRecord) -> RecordAppended | Contended:
        return await self._held(command, fast_record)

    async def commit(self, command: CommitTurn) -> TurnCommitted | Contended:
        return await self._held(command, fast_commit)

    @unavailable_on_outage
    async def _held(
        self, command: C, fast: Callable[[asyncpg.Connection, C], Awaitable[T | None]]
    ) -> T | Contended:
        """A claim holder's command in one statement: what it wrote, or, when its condition
        failed, the version the session moved on to. A unique key that said no sends it
        through the skeleton, whose locked read decides again."""
        async with self.pool.db.acquire() as conn:
            try:
                landed = await fast(conn, command)
            except Conflict:
                pass  # decided again below, on a locked read
            else:
                if landed is not None:
                    return landed
                state = (await load(conn, command.session_id)).state
                return Contended(current=state.version if state else 0)
        answer: T | Contended = await self._execute(command)
        return answer
