"""The PostgreSQL session store: one round trip per transaction on the hot path.

Every write of a turn is a single statement, sent in autocommit mode, so the statement is
the transaction and the server does the work in one round trip instead of BEGIN / SELECT
... FOR UPDATE / INSERT / UPDATE / COMMIT. Each statement is conditional: it changes the
session only if the session is exactly as the decision needs it (the presented token is
current and no turn holds the claim; or this turn still holds it), and appends its event in
the same statement through a data-modifying CTE, linked into the session's hash chain by
`sha256()` in SQL (infra/chain.py defines the link; the seq is only known in there). When
the condition fails, the store reads the row fresh and lets the domain say why (a refusal,
or Contended).

The SQL (infra/postgres_sql.py) mirrors domain.state.evolve for the claim, record, renewal
and commit events. That is checked, not assumed: the projection-rebuild test folds the
events with the domain's own evolve and compares the result with the rows these statements
wrote, chain heads included, and `baton verify` recomputes every link in Python. The rare
paths (releasing a failed turn, taking over a lapsed claim) keep the general form: lock the
row, decide in Python, write. asyncpg is used directly: it prepares and caches each
statement per connection.
"""

import functools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
import msgspec

from domain import decisions
from domain.events import (
    EVENT_KINDS,
    ClaimRenewed,
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import KEEP, Contended, HandlerOutcome
from domain.ports import ClaimGranted, StoreUnavailable
from domain.refusals import Refusal
from domain.state import Claim, SessionState, SessionStatus, fold, outcome_summary
from infra import postgres_sql as sql
from infra.chain import ChainHeads, row_payload, standalone
from infra.codec import event_to_row, row_to_state, state_to_row
from infra.conflict import CLAIM_ATTEMPTS, Conflict, StoreCorrupted
from infra.tables import SESSION_FIELDS

_json_encoder = msgspec.json.Encoder()

# What a dropped connection, a restarting server or a refused connection raise. Any of them
# means the statement's fate is unknown to us, so the caller gets StoreUnavailable (503).
_OUTAGES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, starting up
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # not accepting connections
    # A connection terminated mid-operation can leave asyncpg's protocol state confused
    # ("cannot switch to state 12; another operation is in progress").
    asyncpg.exceptions.InternalClientError,
)

P = ParamSpec("P")
R = TypeVar("R")


def _outage_is_unavailable(
    method: Callable[Concatenate["PostgresSessionStore", P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate["PostgresSessionStore", P], Coroutine[Any, Any, R]]:
    """Turn a database outage into StoreUnavailable, and make the pool drop every pooled
    connection: after a restart they are all dead, and each would fail one request more."""

    @functools.wraps(method)
    async def guarded(store: "PostgresSessionStore", /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(store, *args, **kwargs)
        except _OUTAGES as error:
            store._expire_connections()
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from error

    return guarded


def _json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


async def _keep_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset hook, doing nothing on purpose.

    By default asyncpg resets every connection it takes back (RESET ALL, UNLISTEN *, CLOSE
    ALL, unlock advisory locks): one more round trip per store call, which cost as much as
    the store call itself. This store sets no session state, listens to nothing and takes no
    session-level lock, so there is nothing to reset; asyncpg still rolls back a transaction
    left open before it calls this."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON in and out as Python values, encoded with msgspec rather than the stdlib.
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type,
            encoder=_json,
            decoder=msgspec.json.decode,
            schema="pg_catalog",
            format="text",
        )


def _event_args(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(field) for field in sql.EVENT_FIELDS)


def _state_from(record: asyncpg.Record) -> SessionState:
    row = dict(record)
    row["session_id"] = str(row["session_id"])
    return row_to_state(row)


class PostgresSessionStore:
    def __init__(self, dsn: str, *, pool_size: int) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> "PostgresSessionStore":
        # min_size=0: no connection at start-up, so a server whose database is down comes up
        # not-ready (see /readyz) and recovers when the database does.
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._pool_size,
            init=_init_connection,
            reset=_keep_session_state,
        )
        return self

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def _expire_connections(self) -> None:
        if self._pool is not None:
            self._pool.expire_connections()

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not open")
        return self._pool

    @_outage_is_unavailable
    async def start(self, started: SessionStarted) -> ClaimGranted:
        state = fold([started])
        event = event_to_row(started)
        _, heads = ChainHeads().append(event)  # the started event's link is the chain's head
        row = {**state_to_row(state), **heads.as_row()}
        await self._db.execute(
            sql.START,
            *(row[field] for field in SESSION_FIELDS),
            event["seq"],
            event["kind"],
            event["turn"],
            event["data"],
            event["recorded_at"],
        )
        return ClaimGranted(started, state)

    @_outage_is_unavailable
    async def claim(
        self,
        session_id: SessionId,
        presented: TokenDigest | None,
        input: JsonObject,
        at: datetime,
        lease: Lease,
    ) -> ClaimGranted | Refusal:
        if presented is not None:
            try:
                granted = await self._claim_at_once(session_id, presented, input, at, lease)
            except asyncpg.UniqueViolationError:
                granted = None  # the event table says this version is taken: decide again
            if granted is not None:
                return granted
        # Not claimed at once: read the session and let the domain say why.
        state = await self.load(session_id)
        decision = decisions.claim_turn(
            state, session_id=session_id, presented=presented, input=input, lease=lease, at=at
        )
        if isinstance(decision, Refusal):
            refused = decisions.record_refusal(
                decision, state=state, presented_id=session_id, at=at
            )
            await self.refuse(refused)
            return decision
        # A claim after all: a lapsed lease to take over, or a turn that ended meanwhile.
        return await self._claim_locked(session_id, presented, input, at, lease)

    async def _claim_locked(
        self,
        session_id: SessionId,
        presented: TokenDigest | None,
        input: JsonObject,
        at: datetime,
        lease: Lease,
    ) -> ClaimGranted | Refusal:
        """The general form: lock the row, decide, write, in one transaction."""
        for _ in range(CLAIM_ATTEMPTS):
            try:
                async with self._db.acquire() as conn, conn.transaction():
                    row = await conn.fetchrow(sql.SELECT_SESSION + " FOR UPDATE", session_id)
                    state = _state_from(row) if row is not None else None
                    decision = decisions.claim_turn(
                        state,
                        session_id=session_id,
                        presented=presented,
                        input=input,
                        lease=lease,
                        at=at,
                    )
                    if isinstance(decision, Refusal):
                        refused = decisions.record_refusal(
                            decision, state=state, presented_id=session_id, at=at
                        )
                        await _refuse(conn, refused)
                        return decision
                    if state is None or row is None:  # claim_turn refuses an unknown session
                        raise StoreCorrupted(f"a claim on {session_id} decided without a session")
                    after = await _append(conn, state, ChainHeads.of(row), decision.events)
                    return ClaimGranted(decision.claimed, after)
            except Conflict:
                continue
        raise StoreCorrupted(f"claims on session {session_id} keep conflicting")

    async def _claim_at_once(
        self,
        session_id: SessionId,
        presented: TokenDigest,
        input: JsonObject,
        at: datetime,
        lease: Lease,
    ) -> ClaimGranted | None:
        draft = event_to_row(
            TurnClaimed(session_id=session_id, seq=0, turn=0, input=input, lease=lease, at=at)
        )
        record = await self._db.fetchrow(
            sql.CLAIM,
            session_id,
            presented,
            at,
            draft["data"],
            SessionStatus.IN_FLIGHT.value,
            SessionStatus.IDLE.value,
            EVENT_KINDS[TurnClaimed],
            lease.owner,
            lease.until,
            row_payload(draft),
        )
        if record is None:
            return None
        state = _state_from(record)
        event = TurnClaimed(
            session_id=session_id,
            seq=state.version,
            turn=state.turn + 1,
            input=input,
            lease=lease,
            at=at,
        )
        if state.claim != Claim(turn=event.turn, seq=event.seq):
            raise StoreCorrupted(f"a claim on session {session_id} did not land as decided")
        return ClaimGranted(event, state)

    async def _holder_event(
        self, event: RecordAppended | ClaimRenewed, claim: Claim, lease: Lease | None
    ) -> int | None:
        """Append a claim holder's event; its seq, or None if the claim is no longer held."""
        draft = event_to_row(event)
        seq: int | None = await self._db.fetchval(
            sql.HOLDER_EVENT,
            event.session_id,
            claim.turn,
            claim.seq,
            event.at,
            draft["kind"],
            draft["data"],
            lease.owner if lease else None,
            lease.until if lease else None,
            row_payload(draft),
        )
        return seq

    @_outage_is_unavailable
    async def renew(
        self, session_id: SessionId, claim: Claim, lease: Lease, at: datetime
    ) -> ClaimRenewed | Contended:
        draft = ClaimRenewed(session_id=session_id, seq=0, turn=claim.turn, lease=lease, at=at)
        seq = await self._holder_event(draft, claim, lease)
        if seq is None:
            return await self._contended(session_id)
        return replace(draft, seq=seq)

    @_outage_is_unavailable
    async def append_record(
        self, session_id: SessionId, claim: Claim, record: JsonValue, at: datetime
    ) -> RecordAppended | Contended:
        draft = RecordAppended(session_id=session_id, seq=0, turn=claim.turn, record=record, at=at)
        seq = await self._holder_event(draft, claim, None)
        if seq is None:
            return await self._contended(session_id)
        return replace(draft, seq=seq)

    @_outage_is_unavailable
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
        draft = TurnCommitted(
            session_id=session_id,
            seq=0,
            turn=claim.turn,
            consumed=consumed,
            issued=issued,
            outcome=outcome,
            at=at,
            sealed=sealed,
        )
        row = event_to_row(draft)
        keep = outcome.state is KEEP
        try:
            seq = await self._db.fetchval(
                sql.COMMIT,
                session_id,
                claim.turn,
                claim.seq,
                SessionStatus.IDLE.value,
                issued,
                keep,
                None if keep else outcome.state,
                outcome_summary(draft),
                at,
                row["kind"],
                row["data"],
                consumed,
                row_payload(row),
            )
        except asyncpg.UniqueViolationError:
            seq = None  # only a takeover could have spent this token already
        if seq is None:
            return await self._contended(session_id)
        return replace(draft, seq=seq)

    @_outage_is_unavailable
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
        async with self._db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.SELECT_SESSION + " FOR UPDATE", session_id)
            state = _state_from(row) if row is not None else None
            released = decisions.release_turn(state, claim, cause, error, at)
            if state is None or row is None or released is None:
                return  # the claim was taken over; releasing it is no longer ours to do
            ended: list[SessionEvent] = [released]
            if close is not None:
                closing = decisions.close_session(fold(ended, state), close, at, turn=claim.turn)
                ended.append(closing)
            await _append(conn, state, ChainHeads.of(row), ended)

    @_outage_is_unavailable
    async def close_session(
        self, session_id: SessionId, presented: TokenDigest | None, at: datetime
    ) -> SessionState | Refusal:
        # Rare enough for the general form: lock the row, decide, write.
        async with self._db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.SELECT_SESSION + " FOR UPDATE", session_id)
            state = _state_from(row) if row is not None else None
            decision = decisions.close_by_client(
                state, session_id=session_id, presented=presented, at=at
            )
            if isinstance(decision, Refusal):
                refused = decisions.record_refusal(
                    decision, state=state, presented_id=session_id, at=at
                )
                await _refuse(conn, refused)
                return decision
            if state is None or row is None:  # close_by_client refuses an unknown session
                raise StoreCorrupted(f"a close of {session_id} decided without a session")
            return await _append(conn, state, ChainHeads.of(row), decision)

    @_outage_is_unavailable
    async def refuse(self, refused: RequestRefused) -> None:
        async with self._db.acquire() as conn:
            await _refuse(conn, refused)

    @_outage_is_unavailable
    async def load(self, session_id: SessionId) -> SessionState | None:
        row = await self._db.fetchrow(sql.SELECT_SESSION, session_id)
        return _state_from(row) if row is not None else None

    async def _contended(self, session_id: SessionId) -> Contended:
        state = await self.load(session_id)
        return Contended(current=state.version if state else 0)


async def _refuse(conn: asyncpg.Connection, refused: RequestRefused) -> None:
    """A refusal, linked into its session's refusal chain, or standing alone if it names no
    session (or a session that is not there)."""
    row = event_to_row(refused)
    if refused.session_id is not None:
        place = await conn.fetchval(
            sql.REFUSE,
            refused.session_id,
            row["kind"],
            row["data"],
            row["recorded_at"],
            row_payload(row),
        )
        if place is not None:
            return
    await conn.execute(sql.INSERT_EVENT, *_event_args({**row, "hash": standalone(row)}))


async def _append(
    conn: asyncpg.Connection,
    state: SessionState,
    heads: ChainHeads,
    new_events: Sequence[SessionEvent],
) -> SessionState:
    """Append a session's events, linked into its chain, and write the projection they fold
    into (inside a transaction that holds the row)."""
    rows = []
    for event in new_events:
        row = event_to_row(event)
        row["hash"], heads = heads.append(row)
        rows.append(_event_args(row))
    try:
        await conn.executemany(sql.INSERT_EVENT, rows)
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error
    after = fold(new_events, state)
    values = {**state_to_row(after), **heads.as_row()}
    written = await conn.execute(
        sql.UPDATE_SESSION,
        state.session_id,
        *(values[field] for field in sql.UPDATED_FIELDS),
        state.version,
    )
    if written != "UPDATE 1":
        raise Conflict(f"session {state.session_id} moved past version {state.version}")
    return after
