"""The PostgreSQL session store: the shared skeleton, and one round trip on the hot path.

Every command can run as the skeleton of infra/command_store.py: in one transaction, lock
the session's row (SELECT ... FOR NO KEY UPDATE), let the command decide, write the plan.
The rare commands (release, close, a takeover) do exactly that; a start writes its plan in
one statement (a new session has nothing to lock).

The hot ones (claim, record, renewal, commit) have fast paths: one conditional statement
each, sent in autocommit mode, so the statement is the transaction and the server does the
work in one round trip. Each changes the session only if it is exactly as the domain's
decision needs it (the presented token is current and no turn holds the claim; or this turn
still holds the claim and the token it consumes is current), and appends its event in the
same statement through a data-modifying CTE, linked into the hash chain by `sha256()` in
SQL (infra/postgres_sql.py). They mirror domain/decisions.py and domain.state.evolve, and
tests/infra/test_parity.py drives the same histories through both and compares the events
and projection rows they leave. When a fast path's condition fails, the domain decides why
on a fresh read (a batch of claims reads the row and the seal back itself, for the claims
that did not land). A replay records its recovery and reads its turn in one statement.

Claims and commits, the two writes of every turn, also go together: when more arrive than
BATON_DB_WRITE_LANES at once, those waiting go as one statement (infra/batcher.py, group
commit), which costs the server one round trip's CPU instead of one for each.

A refusal is recorded in a statement of its own after the read that decided it (the port
allows this: a refusal changes no state), so that refusing never locks the session's row.
Facts without a seq (refusals, recoveries) go together too, as claims and commits do: each
alone would wait for a WAL flush of its own, and a flood of retried replays or refused
tokens made those flushes the limit (each linked fact is a write; make bench's retry row).
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg

from baton.domain.commands import (
    AppendRecord,
    ClaimTurn,
    Command,
    CommitTurn,
    ReadSession,
    RenewClaim,
    StartSession,
)
from baton.domain.decisions import ClaimGranted
from baton.domain.events import (
    ClaimRenewed,
    RecordAppended,
    Recovered,
    RequestRefused,
    SessionEvent,
    SideEvent,
    TurnCommitted,
)
from baton.domain.identifiers import SessionId
from baton.domain.outcomes import Contended
from baton.domain.recovery import ReadAccess, Replay
from baton.domain.refusals import Refusal
from baton.domain.state import SessionState
from baton.infra import postgres_sql as sql
from baton.infra.batcher import Batcher
from baton.infra.command_store import CommandStore
from baton.infra.conflict import Conflict, retrying
from baton.infra.notifier import Notifier
from baton.infra.planning import Loaded, plan
from baton.infra.postgres_batch import batch_claim, batch_commit, batch_side
from baton.infra.postgres_fast import fast_claim, fast_commit, fast_record, fast_renew
from baton.infra.postgres_pool import PostgresPool, unavailable_on_outage
from baton.infra.postgres_writes import (
    SideFact,
    as_events,
    history,
    load,
    load_seal,
    load_with_seal,
    side_alone,
    stand_alone,
    write,
)

T = TypeVar("T")
C = TypeVar("C", bound=Command[Any])
W = TypeVar("W", bound=Command[Any] | SideFact)  # a write that can go in a batch

BATCH_MOST = 64  # writes in one statement at most (infra/batcher.py)


class PostgresSessionStore(CommandStore):
    def __init__(self, pool: PostgresPool, notifier: Notifier | None, *, lanes: int) -> None:
        self.pool = pool
        self.notifier = notifier
        # Group commit of the two writes every turn makes: `lanes` of each run at once,
        # alone; more wait and go together when a lane frees (infra/batcher.py).
        self._claims = self._batcher(fast_claim, batch_claim, lanes)
        self._commits = self._batcher(fast_commit, batch_commit, lanes)
        self._sides = self._batcher(side_alone, batch_side, lanes)

    # ------------------------------------------------------------------ the skeleton

    @unavailable_on_outage
    async def _execute(self, command: Command[T]) -> T:
        async def attempt() -> T:
            async with self.pool.connection() as conn, conn.transaction():
                starting = isinstance(command, StartSession)
                seal = await load_seal(conn, command.seal_lookup, lock=starting)
                loaded = await load(conn, command.subject(seal), lock=True, seal=seal)
                decision = command.decide(loaded.state, seal)
                await write(conn, plan(loaded, decision))
                return decision.answer

        return await retrying(attempt, f"session {command.session_id}")

    @unavailable_on_outage
    async def refuse(self, refused: RequestRefused) -> None:
        await self.record_fact(refused)

    async def record_fact(self, event: SideEvent, replays: int | None = None) -> list[SessionEvent]:
        """Record a fact without a seq, linked into its session's side chain (with others
        arriving meanwhile, in one statement), or standing alone if it names no session or
        one that is not there; a replay's recovery (`replays`: its turn) comes back with
        the turn's events, read in the same statement."""
        linked: bool = False
        rows: list[asyncpg.Record] = []
        if event.session_id is not None:
            linked, rows = await self._sides.submit(SideFact(event, replays))
        if not linked:
            async with self.pool.connection() as conn:
                await stand_alone(conn, event)
        return as_events(rows)

    @unavailable_on_outage
    async def load(self, session_id: SessionId) -> SessionState | None:
        async with self.pool.connection() as conn:
            return (await load(conn, session_id)).state

    @unavailable_on_outage
    async def history(
        self, session_id: SessionId, *, after: int = 0, turn: int | None = None
    ) -> list[SessionEvent]:
        async with self.pool.connection() as conn:
            return await history(conn, session_id, after, turn)

    @unavailable_on_outage
    async def sweep(self, now: datetime) -> None:
        """Erase the seals whose window has passed, and followers long gone."""
        async with self.pool.connection() as conn:
            for statement in sql.SWEEP:
                await conn.execute(statement, now)

    @unavailable_on_outage
    async def spend_refusal(
        self, client: str, at: datetime, window_end: datetime
    ) -> tuple[int, datetime]:
        """Count one more refusal of `client`: (refusals in its window, the window's end)."""
        async with self.pool.connection() as conn:
            record = await conn.fetchrow(sql.SPEND_REFUSAL, client, window_end, at)
        assert record is not None  # noqa: S101 - an upsert always returns its row
        return int(record["refused"]), record["window_end"]

    @unavailable_on_outage
    async def database_time(self) -> datetime:
        """The database's clock (clock_timestamp(): now, not the transaction's start)."""
        async with self.pool.connection() as conn:
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            return now

    @unavailable_on_outage
    async def follow(self, session_id: SessionId, until: datetime) -> None:
        """Have writes to the session wake its followers until `until` (NOTIFY)."""
        async with self.pool.connection() as conn:
            await conn.execute(sql.FOLLOW, session_id, until)

    # ------------------------------------------------------------------ faster paths

    @unavailable_on_outage
    async def start(self, command: StartSession) -> ClaimGranted | Replay | Refusal:
        if command.idempotency is not None:
            return await self._execute(command)  # its key may have started a session
        decision = command.decide(None)
        async with self.pool.connection() as conn:
            await write(conn, plan(Loaded(None), decision))
        self.woke(command.session_id)
        return decision.answer

    @unavailable_on_outage
    async def claim(self, command: ClaimTurn) -> ClaimGranted | Replay | Refusal:
        answer = None
        if command.presented is not None:
            try:
                answer = await self._claims.submit(command)
            except Conflict:
                answer = None  # decided on a read of its own, below
        if isinstance(answer, ClaimGranted):
            self.woke(command.session_id)
            return answer
        # Not claimed: the domain says why, on what the claim found, or on a read.
        if answer is None:
            return await self._decided_unlocked(command)
        return await self._decided_on(command, answer)

    @unavailable_on_outage
    async def read(self, command: ReadSession) -> ReadAccess | Refusal:
        return await self._decided_unlocked(command)

    async def _decided_unlocked(self, command: Command[T]) -> T:
        """Decide on a fresh read of the row, without locking it."""
        async with self.pool.connection() as conn:
            loaded = await _seal_and_row(conn, command)
        return await self._decided_on(command, loaded)

    async def _decided_on(self, command: Command[T], loaded: Loaded) -> T:
        """Decide on the row and seal as read, unlocked: what changes no state (a refusal, a
        recovery) is recorded on its own; anything else (a lapsed lease to take over, a turn
        that ended meanwhile) runs through the skeleton, locked, which reads again."""
        decision = command.decide(loaded.state, loaded.seal)
        if decision.after is not None:
            return await self._run(command)
        answer, fact = decision.answer, decision.side_event
        if fact is None:
            return answer
        if isinstance(answer, Replay) and isinstance(fact, Recovered):
            # The reply is built from the turn's events: read them as the fact lands.
            return replace(answer, events=tuple(await self.record_fact(fact, fact.turn)))
        await self.record_fact(fact)
        return answer

    async def renew(self, command: RenewClaim) -> ClaimRenewed | Contended:
        return await self._held(command, partial(self._alone, fast=fast_renew))

    async def append_record(self, command: AppendRecord) -> RecordAppended | Contended:
        return await self._held(command, partial(self._alone, fast=fast_record))

    async def commit(self, command: CommitTurn) -> TurnCommitted | Contended:
        return await self._held(command, self._commits.submit)

    @unavailable_on_outage
    async def _held(self, command: C, send: Callable[[C], Awaitable[T | None]]) -> T | Contended:
        """A claim holder's command in one statement: what it wrote, or, when its condition
        failed, the version the session moved on to. A unique key that said no sends it
        through the skeleton, whose locked read decides again."""
        try:
            landed = await send(command)
        except Conflict:
            pass  # decided again below, on a locked read
        else:
            if landed is not None:
                self.woke(command.session_id)
                return landed
            async with self.pool.connection() as conn:
                state = (await load(conn, command.session_id)).state
            return Contended(current=state.version if state else 0)
        answer: T | Contended = await self._run(command)
        return answer

    async def _alone(self, command: W, fast: Callable[[asyncpg.Connection, W], Awaitable[T]]) -> T:
        """One write in a statement of its own."""
        async with self.pool.connection() as conn:
            return await fast(conn, command)

    def _batcher(
        self,
        fast: Callable[[asyncpg.Connection, W], Awaitable[T]],
        many: Callable[[asyncpg.Connection, Sequence[W]], Awaitable[list[T]]],
        lanes: int,
    ) -> Batcher[W, T]:
        """Writes of one kind: alone in their own statement, or several in one."""

        async def together(commands: Sequence[W]) -> list[T]:
            async with self.pool.connection() as conn:
                return await many(conn, commands)

        alone = partial(self._alone, fast=fast)
        return Batcher(alone, together, _session_of, lanes=lanes, most=BATCH_MOST)


def _session_of(write: Command[Any] | SideFact) -> SessionId:
    return write.session_id


async def _seal_and_row(conn: asyncpg.Connection, command: Command[T]) -> Loaded:
    """The seal and the row, as of one moment.

    Read as two statements, a commit landing between them could pair a row that had moved
    on with no seal for the token it consumed, and a read racing the commit was refused
    stale-token (the chaos run found it). A session's own command reads both in one
    statement, one snapshot. A keyed start must find its session through the seal, so it
    reads both in one REPEATABLE READ snapshot instead (two round trips more, on a rare
    path)."""
    if isinstance(command, StartSession):
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            seal = await load_seal(conn, command.seal_lookup)
            return await load(conn, command.subject(seal), seal=seal)
    return await load_with_seal(conn, command.subject(None), command.seal_lookup)
