"""The PostgreSQL session store: one round trip per transaction on the hot path.

Every write of a turn is a single statement, sent in autocommit mode, so the statement is
the transaction and the server does the work in one round trip instead of BEGIN / SELECT
... FOR UPDATE / INSERT / UPDATE / COMMIT. Each statement is conditional: it changes the
session only if the session is exactly as the decision needs it (the presented token is
current and no turn holds the claim; or this turn still holds it), and appends its event in
the same statement through a data-modifying CTE. When the condition fails, the store reads
the row fresh and lets the domain say why (a refusal, or Contended).

The SQL here mirrors domain.state.evolve for the claim, record and commit events. That is
checked, not assumed: the projection-rebuild test folds the events with the domain's own
evolve and compares the result with the rows these statements wrote. The rare paths
(releasing a failed turn, closing) keep the general form: lock the row, decide in Python,
write. asyncpg is used directly: it prepares and caches each statement per connection.
"""

import functools
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
import msgspec

from domain import decisions
from domain.events import (
    EVENT_KINDS,
    ClaimRenewed,
    CloseCause,
    Event,
    Lease,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    kind_of,
)
from domain.identifiers import SessionId, TokenDigest
from domain.json import JsonObject, JsonValue
from domain.outcomes import KEEP, Contended, HandlerOutcome
from domain.ports import ClaimGranted, StoreUnavailable
from domain.refusals import Refusal
from domain.state import Claim, SessionState, SessionStatus, fold, outcome_summary
from infra.codec import event_to_row, row_to_state, state_to_row
from infra.conflict import CLAIM_ATTEMPTS, Conflict, StoreCorrupted

_SESSION_FIELDS = (
    "session_id",
    "version",
    "turn",
    "status",
    "token_digest",
    "claim_turn",
    "claim_seq",
    "claim_owner",
    "lease_until",
    "state",
    "last_outcome",
    "created_at",
    "updated_at",
)
_SESSION_COLUMNS = ", ".join(_SESSION_FIELDS)
_EVENT_FIELDS = ("session_id", "seq", "kind", "turn", "consumed", "issued", "data", "recorded_at")

_SELECT_SESSION = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = $1"  # noqa: S608
_INSERT_EVENT = (
    "INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
_UPDATE_SESSION = (
    "UPDATE sessions SET version = $2, turn = $3, status = $4, token_digest = $5, "
    "claim_turn = $6, claim_seq = $7, claim_owner = $8, lease_until = $9, state = $10, "
    "last_outcome = $11, updated_at = $12 WHERE session_id = $1 AND version = $13"
)

# A new session row and its `started` event.
_START = f"""
WITH session AS (
    INSERT INTO sessions ({_SESSION_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
)
INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at)
VALUES ($1, $14, $15, $16, NULL, NULL, $17, $18)
"""  # noqa: S608

# Validate and claim in one step: only a session whose current token was presented and
# that no turn holds moves; the event lands at the version the update gave it.
_CLAIM = f"""
WITH claimed AS (
    UPDATE sessions
       SET version = version + 1, status = $5, claim_turn = turn + 1,
           claim_seq = version + 1, claim_owner = $8, lease_until = $9, updated_at = $3
     WHERE session_id = $1 AND token_digest = $2 AND status = $6
 RETURNING {_SESSION_COLUMNS}
), appended AS (
    INSERT INTO events (session_id, seq, kind, turn, data, recorded_at)
    SELECT session_id, version, $7, claim_turn, $4, $3 FROM claimed
)
SELECT * FROM claimed
"""  # noqa: S608

# A longer lease, only while this turn still holds the claim.
_RENEW = """
WITH moved AS (
    UPDATE sessions SET version = version + 1, claim_owner = $4, lease_until = $5,
           updated_at = $6
     WHERE session_id = $1 AND claim_turn = $2 AND claim_seq = $3
 RETURNING session_id, version
)
INSERT INTO events (session_id, seq, kind, turn, data, recorded_at)
SELECT session_id, version, $7, $2, $8, $6 FROM moved
RETURNING seq
"""

# A journal record, only while this turn still holds the claim.
_APPEND_RECORD = """
WITH moved AS (
    UPDATE sessions SET version = version + 1, updated_at = $4
     WHERE session_id = $1 AND claim_turn = $2 AND claim_seq = $3
 RETURNING session_id, version
)
INSERT INTO events (session_id, seq, kind, turn, data, recorded_at)
SELECT session_id, version, $5, $2, $6, $4 FROM moved
RETURNING seq
"""

# Consume the current token and issue the next, only while this turn holds the claim. The
# row is read under lock first because the consumed digest is the row's old value.
_COMMIT = """
WITH held AS (
    SELECT session_id, version, token_digest, state FROM sessions
     WHERE session_id = $1 AND claim_turn = $2 AND claim_seq = $3
       FOR UPDATE
), moved AS (
    UPDATE sessions AS s
       SET version = held.version + 1, turn = $2, status = $4, token_digest = $5,
           claim_turn = NULL, claim_seq = NULL, claim_owner = NULL, lease_until = NULL,
           state = CASE WHEN $6 THEN held.state ELSE $7 END,
           last_outcome = $8, updated_at = $9
      FROM held
     WHERE s.session_id = held.session_id
 RETURNING s.session_id, s.version, held.token_digest AS consumed
)
INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at)
SELECT session_id, version, $10, $2, consumed, $5, $11, $9 FROM moved
RETURNING seq, consumed
"""

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
    await conn.set_type_codec(
        "jsonb", encoder=_json, decoder=msgspec.json.decode, schema="pg_catalog", format="text"
    )


def _event_args(event: Event) -> tuple[Any, ...]:
    row = event_to_row(event)
    return tuple(row[field] for field in _EVENT_FIELDS)


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
        row = state_to_row(state)
        event = event_to_row(started)
        await self._db.execute(
            _START,
            *(row[field] for field in _SESSION_FIELDS),
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
            await self._record_refusal(decision, state, session_id, at)
            return decision
        # A claim after all: a lapsed lease to take over, or a turn that ended meanwhile.
        return await self._claim_locked(session_id, presented, input, at, lease)

    async def _record_refusal(
        self, refusal: Refusal, state: SessionState | None, session_id: SessionId, at: datetime
    ) -> None:
        refused = decisions.record_refusal(refusal, state=state, presented_id=session_id, at=at)
        await self.refuse(refused)

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
                    row = await conn.fetchrow(_SELECT_SESSION + " FOR UPDATE", session_id)
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
                        await conn.execute(_INSERT_EVENT, *_event_args(refused))
                        return decision
                    if state is None:  # claim_turn refuses an unknown session; this is for mypy
                        raise StoreCorrupted(f"a claim on {session_id} decided without a session")
                    after = await _append(conn, state, decision.events)
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
        draft = TurnClaimed(session_id=session_id, seq=0, turn=0, input=input, lease=lease, at=at)
        record = await self._db.fetchrow(
            _CLAIM,
            session_id,
            presented,
            at,
            event_to_row(draft)["data"],
            SessionStatus.IN_FLIGHT.value,
            SessionStatus.IDLE.value,
            EVENT_KINDS[TurnClaimed],
            lease.owner,
            lease.until,
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

    @_outage_is_unavailable
    async def renew(
        self, session_id: SessionId, claim: Claim, lease: Lease, at: datetime
    ) -> ClaimRenewed | Contended:
        draft = ClaimRenewed(session_id=session_id, seq=0, turn=claim.turn, lease=lease, at=at)
        seq = await self._db.fetchval(
            _RENEW,
            session_id,
            claim.turn,
            claim.seq,
            lease.owner,
            lease.until,
            at,
            kind_of(draft),
            event_to_row(draft)["data"],
        )
        if seq is None:
            return await self._contended(session_id)
        return ClaimRenewed(session_id=session_id, seq=seq, turn=claim.turn, lease=lease, at=at)

    @_outage_is_unavailable
    async def append_record(
        self, session_id: SessionId, claim: Claim, record: JsonValue, at: datetime
    ) -> RecordAppended | Contended:
        event = RecordAppended(session_id=session_id, seq=0, turn=claim.turn, record=record, at=at)
        seq = await self._db.fetchval(
            _APPEND_RECORD,
            session_id,
            claim.turn,
            claim.seq,
            at,
            kind_of(event),
            event_to_row(event)["data"],
        )
        if seq is None:
            return await self._contended(session_id)
        return RecordAppended(session_id=session_id, seq=seq, turn=claim.turn, record=record, at=at)

    @_outage_is_unavailable
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
        # The event as it will be, but for the seq and the consumed digest the row supplies.
        draft = TurnCommitted(
            session_id=session_id,
            seq=0,
            turn=claim.turn,
            consumed=None,
            issued=issued,
            outcome=outcome,
            at=at,
            sealed=sealed,
        )
        keep = outcome.state is KEEP
        try:
            written = await self._db.fetchrow(
                _COMMIT,
                session_id,
                claim.turn,
                claim.seq,
                SessionStatus.IDLE.value,
                issued,
                keep,
                None if keep else outcome.state,
                outcome_summary(draft),
                at,
                kind_of(draft),
                event_to_row(draft)["data"],
            )
        except asyncpg.UniqueViolationError:
            written = None  # only a takeover could have spent this token already
        if written is None:
            return await self._contended(session_id)
        return TurnCommitted(
            session_id=session_id,
            seq=written["seq"],
            turn=claim.turn,
            consumed=written["consumed"],
            issued=issued,
            outcome=outcome,
            at=at,
            sealed=sealed,
        )

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
            row = await conn.fetchrow(_SELECT_SESSION + " FOR UPDATE", session_id)
            state = _state_from(row) if row is not None else None
            released = decisions.release_turn(state, claim, cause, error, at)
            if state is None or released is None:
                return  # the claim was taken over; releasing it is no longer ours to do
            ended: list[SessionEvent] = [released]
            if close is not None:
                closing = decisions.close_session(fold(ended, state), close, at, turn=claim.turn)
                ended.append(closing)
            await _append(conn, state, ended)

    @_outage_is_unavailable
    async def refuse(self, refused: RequestRefused) -> None:
        await self._db.execute(_INSERT_EVENT, *_event_args(refused))

    @_outage_is_unavailable
    async def load(self, session_id: SessionId) -> SessionState | None:
        row = await self._db.fetchrow(_SELECT_SESSION, session_id)
        return _state_from(row) if row is not None else None

    async def _contended(self, session_id: SessionId) -> Contended:
        state = await self.load(session_id)
        return Contended(current=state.version if state else 0)


async def _append(
    conn: asyncpg.Connection, state: SessionState, new_events: Sequence[SessionEvent]
) -> SessionState:
    """Append a session's events and write the projection they fold into (inside a
    transaction that holds the row)."""
    try:
        await conn.executemany(_INSERT_EVENT, [_event_args(event) for event in new_events])
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error
    after = fold(new_events, state)
    row = state_to_row(after)
    written = await conn.execute(
        _UPDATE_SESSION,
        *(row[field] for field in _SESSION_FIELDS if field != "created_at"),
        state.version,
    )
    if written != "UPDATE 1":
        raise Conflict(f"session {state.session_id} moved past version {state.version}")
    return after
