"""The PostgreSQL store's I/O: the skeleton's load and write, and the one-statement paths.

Each function takes a connection and sends the statements of infra/postgres_sql.py; the
store (infra/postgres_store.py) decides when each is used. A unique key that says no, in
the skeleton's write or in a one-statement path, is a Conflict: the store then reads the
row again, locked, and lets the domain decide again.
"""

from dataclasses import replace
from typing import Any

import asyncpg

from domain.commands import AppendRecord, ClaimTurn, CommitTurn, RenewClaim
from domain.decisions import ClaimGranted
from domain.events import (
    ClaimRenewed,
    Lease,
    RecordAppended,
    RequestRefused,
    TurnClaimed,
    TurnCommitted,
)
from domain.identifiers import SessionId
from domain.outcomes import KEEP
from domain.state import Claim, SessionStatus, outcome_summary
from infra import postgres_sql as sql
from infra.chain import ChainHeads, row_payload
from infra.codec import event_to_row, row_to_state
from infra.conflict import Conflict, StoreCorrupted
from infra.planning import Loaded, RefusalRow, WritePlan, plan_refusal
from infra.tables import EVENT_FIELDS, SESSION_FIELDS, UPDATED_FIELDS


def _projection(record: asyncpg.Record) -> dict[str, Any]:
    row: dict[str, Any] = dict(record)
    row["session_id"] = str(row["session_id"])
    return row


def _event_args(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(field) for field in EVENT_FIELDS)


# --------------------------------------------------------------- the skeleton's steps


async def load(conn: asyncpg.Connection, session_id: SessionId, *, lock: bool = False) -> Loaded:
    """The session's row; with `lock`, held (FOR UPDATE) until the transaction ends."""
    query = sql.SELECT_SESSION + " FOR UPDATE" if lock else sql.SELECT_SESSION
    record = await conn.fetchrow(query, session_id)
    if record is None:
        return Loaded(None)
    return Loaded(row_to_state(_projection(record)), ChainHeads.of(record))


async def write(conn: asyncpg.Connection, planned: WritePlan) -> None:
    try:
        if planned.projection is not None and planned.expected_version is None:
            await _insert_session(conn, planned)
        else:
            await _append(conn, planned)
        if planned.refusal is not None:
            await _insert_refusal(conn, planned.refusal)
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error


async def _insert_session(conn: asyncpg.Connection, planned: WritePlan) -> None:
    """A new session and its first event, in one statement."""
    assert planned.projection is not None  # noqa: S101 - write() checked it
    (started,) = planned.events
    values = (planned.projection[field] for field in SESSION_FIELDS)
    await conn.execute(sql.START, *values, *_event_args(started))


async def _append(conn: asyncpg.Connection, planned: WritePlan) -> None:
    if planned.events:
        await conn.executemany(sql.INSERT_EVENT, [_event_args(row) for row in planned.events])
    if planned.projection is None:
        return
    values = (planned.projection[field] for field in UPDATED_FIELDS)
    session_id = planned.projection["session_id"]
    written = await conn.execute(sql.UPDATE_SESSION, session_id, *values, planned.expected_version)
    if written != "UPDATE 1":
        raise Conflict(f"session {session_id} moved past version {planned.expected_version}")


async def _insert_refusal(conn: asyncpg.Connection, refusal: RefusalRow) -> None:
    await conn.execute(sql.INSERT_EVENT, *_event_args(refusal.row))
    if refusal.heads is not None:
        heads = refusal.heads
        session_id = refusal.row["session_id"]
        await conn.execute(sql.UPDATE_REFUSALS, session_id, heads.refusals, heads.refusal_head)


async def record_refusal(conn: asyncpg.Connection, refused: RequestRefused) -> None:
    """A refusal, without locking its session's row: linked into the session's refusal
    chain by one statement that takes only the refusal columns, or standing alone if it
    names no session (or one that is not there)."""
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
    await _insert_refusal(conn, plan_refusal(refused, Loaded(None)))


# --------------------------------------------------------------- one statement each


async def fast_claim(conn: asyncpg.Connection, command: ClaimTurn) -> ClaimGranted | None:
    """Claim in one statement if the presented token is current and the session idle;
    None when it is not (the domain then decides why)."""
    draft = TurnClaimed(
        session_id=command.session_id,
        seq=0,
        turn=0,
        input=command.input,
        lease=command.lease,
        at=command.at,
    )
    row = event_to_row(draft)
    try:
        record = await conn.fetchrow(
            sql.CLAIM,
            command.session_id,
            command.presented,
            command.at,
            row["data"],
            SessionStatus.IN_FLIGHT.value,
            SessionStatus.IDLE.value,
            row["kind"],
            command.lease.owner,
            command.lease.until,
            row_payload(row),
        )
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error  # the version is taken: decide again, locked
    if record is None:
        return None
    state = row_to_state(_projection(record))
    claimed = replace(draft, seq=state.version, turn=state.turn + 1)
    if state.claim != Claim(turn=claimed.turn, seq=claimed.seq):
        raise StoreCorrupted(f"a claim on session {command.session_id} did not land as decided")
    return ClaimGranted(claimed, state)


async def fast_record(conn: asyncpg.Connection, command: AppendRecord) -> RecordAppended | None:
    """Append a record while the claim holds; None when it no longer does."""
    appended = RecordAppended(
        session_id=command.session_id,
        seq=0,
        turn=command.claim.turn,
        record=command.record,
        at=command.at,
    )
    seq = await _holder_event(conn, appended, command.claim, None)
    return None if seq is None else replace(appended, seq=seq)


async def fast_renew(conn: asyncpg.Connection, command: RenewClaim) -> ClaimRenewed | None:
    """Extend the lease while the claim holds; None when it no longer does."""
    renewed = ClaimRenewed(
        session_id=command.session_id,
        seq=0,
        turn=command.claim.turn,
        lease=command.lease,
        at=command.at,
    )
    seq = await _holder_event(conn, renewed, command.claim, command.lease)
    return None if seq is None else replace(renewed, seq=seq)


async def _holder_event(
    conn: asyncpg.Connection,
    event: RecordAppended | ClaimRenewed,
    claim: Claim,
    lease: Lease | None,
) -> int | None:
    """A claim holder's own event; its seq, or None if the claim is no longer held."""
    row = event_to_row(event)
    try:
        seq: int | None = await conn.fetchval(
            sql.HOLDER_EVENT,
            event.session_id,
            claim.turn,
            claim.seq,
            event.at,
            row["kind"],
            row["data"],
            lease.owner if lease else None,
            lease.until if lease else None,
            row_payload(row),
        )
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error  # the version is taken: decide again, locked
    return seq


async def fast_commit(conn: asyncpg.Connection, command: CommitTurn) -> TurnCommitted | None:
    """Commit in one statement while the claim holds and the token it consumes is current;
    None when that is no longer so (the session moved on)."""
    draft = TurnCommitted(
        session_id=command.session_id,
        seq=0,
        turn=command.claim.turn,
        consumed=command.consumed,
        issued=command.issued,
        outcome=command.outcome,
        at=command.at,
        sealed=command.sealed,
    )
    row = event_to_row(draft)
    keep = command.outcome.state is KEEP
    try:
        seq = await conn.fetchval(
            sql.COMMIT,
            command.session_id,
            command.claim.turn,
            command.claim.seq,
            SessionStatus.IDLE.value,
            command.issued,
            keep,
            None if keep else command.outcome.state,
            outcome_summary(draft),
            command.at,
            row["kind"],
            row["data"],
            command.consumed,
            row_payload(row),
        )
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error  # a version or token taken: decide again, locked
    return None if seq is None else replace(draft, seq=seq)
