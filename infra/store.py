"""The SQL event store: each method is one transaction that decides with domain rules.

A transaction locks the session's row (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the
database write lock, taken by BEGIN IMMEDIATE), reads the projection, asks the domain what
happens, then appends the events and writes the projection it folds into. The unique
constraints on the event table are the last word: if code ever lets two claims or two
commits through, the second insert fails and comes back as a conflict value.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain import decisions
from domain.events import (
    CloseCause,
    Event,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionEvent,
    SessionStarted,
    TurnCommitted,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import Contended, HandlerOutcome
from domain.ports import ClaimGranted
from domain.refusals import Refusal
from domain.state import Claim, SessionState, fold
from infra.codec import event_to_row, row_to_state, state_to_row
from infra.tables import events, sessions

# A conflict means another transaction changed the session between our read and our
# write; re-reading decides again (usually a refusal). Row locks make this rare, so a
# few attempts are plenty and a longer loop would only hide a bug.
CLAIM_ATTEMPTS = 3


class Conflict(Exception):
    """A write lost a race: a unique key or the projection's version said no."""


class StoreCorrupted(RuntimeError):
    """A conflict that does not go away on a fresh read: the table disagrees with itself."""


def _is_unique_violation(error: IntegrityError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return sqlstate == "23505" or "UNIQUE constraint failed" in str(error.orig)


class SqlSessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # SQLite has no row locks; its BEGIN IMMEDIATE already serialises every writer.
        self._lock_rows = engine.dialect.name == "postgresql"

    async def start(self, started: SessionStarted) -> ClaimGranted:
        async with self._transaction() as conn:
            state = await _append(conn, None, [started])
        return ClaimGranted(started, state)

    async def claim(
        self,
        session_id: SessionId,
        presented: TokenDigest | None,
        input: JsonObject,
        at: datetime,
    ) -> ClaimGranted | Refusal:
        for _ in range(CLAIM_ATTEMPTS):
            try:
                return await self._try_claim(session_id, presented, input, at)
            except Conflict:
                continue
        raise StoreCorrupted(f"claims on session {session_id} keep conflicting")

    async def _try_claim(
        self,
        session_id: SessionId,
        presented: TokenDigest | None,
        input: JsonObject,
        at: datetime,
    ) -> ClaimGranted | Refusal:
        async with self._transaction() as conn:
            state = await self._load(conn, session_id)
            decision = decisions.claim_turn(
                state, session_id=session_id, presented=presented, input=input, at=at
            )
            if isinstance(decision, Refusal):
                refused = decisions.record_refusal(
                    decision, state=state, presented_id=session_id, at=at
                )
                await _insert(conn, [refused])
                return decision
            return ClaimGranted(decision, await _append(conn, state, [decision]))

    async def append_record(
        self, session_id: SessionId, claim: Claim, record: JsonValue, at: datetime
    ) -> RecordAppended | Contended:
        try:
            async with self._transaction() as conn:
                state = await self._load(conn, session_id)
                decision = decisions.append_record(state, claim, record, at)
                if isinstance(decision, RecordAppended):
                    await _append(conn, state, [decision])
                return decision
        except Conflict:
            return await self._contended(session_id)

    async def commit(
        self,
        session_id: SessionId,
        claim: Claim,
        outcome: HandlerOutcome,
        issued: TokenDigest,
        at: datetime,
        *,
        sealed: str | None = None,
    ) -> TurnCommitted | Contended:
        try:
            async with self._transaction() as conn:
                state = await self._load(conn, session_id)
                decision = decisions.commit_turn(state, claim, outcome, issued, at, sealed=sealed)
                if isinstance(decision, TurnCommitted):
                    await _append(conn, state, [decision])
                return decision
        except Conflict:
            return await self._contended(session_id)

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
        async with self._transaction() as conn:
            state = await self._load(conn, session_id)
            released = decisions.release_turn(state, claim, cause, error, at)
            if state is None or released is None:
                return  # the claim was taken over; releasing it is no longer ours to do
            ended: list[SessionEvent] = [released]
            if close is not None:
                closing = decisions.close_session(fold(ended, state), close, at, turn=claim.turn)
                ended.append(closing)
            await _append(conn, state, ended)

    async def refuse(self, refused: RequestRefused) -> None:
        async with self._transaction() as conn:
            await _insert(conn, [refused])

    async def load(self, session_id: SessionId) -> SessionState | None:
        """The session's projection as it is now (no lock)."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(sessions).where(sessions.c.session_id == session_id))
            ).first()
        return row_to_state(row._mapping) if row else None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """engine.begin(), with a lost unique-key race turned into a Conflict."""
        try:
            async with self._engine.begin() as conn:
                yield conn
        except IntegrityError as error:
            if _is_unique_violation(error):
                raise Conflict(str(error.orig)) from error
            raise

    async def _load(self, conn: AsyncConnection, session_id: SessionId) -> SessionState | None:
        query = select(sessions).where(sessions.c.session_id == session_id)
        if self._lock_rows:
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        return row_to_state(row._mapping) if row else None

    async def _contended(self, session_id: SessionId) -> Contended:
        state = await self.load(session_id)
        return Contended(current=state.version if state else 0)


async def _insert(conn: AsyncConnection, new_events: Sequence[Event]) -> None:
    await conn.execute(insert(events), [event_to_row(event) for event in new_events])


async def _append(
    conn: AsyncConnection, state: SessionState | None, new_events: Sequence[SessionEvent]
) -> SessionState:
    """Append a session's events and write the projection they fold into, in one go."""
    await _insert(conn, new_events)
    after = fold(new_events, state)
    if state is None:
        await conn.execute(insert(sessions).values(state_to_row(after)))
        return after
    written = await conn.execute(
        update(sessions)
        .where(sessions.c.session_id == state.session_id)
        .where(sessions.c.version == state.version)
        .values(state_to_row(after))
    )
    if written.rowcount != 1:
        raise Conflict(f"session {state.session_id} moved past version {state.version}")
    return after
