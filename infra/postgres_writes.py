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
    EventKind,
    Lease,
    RecordAppended,
    SessionEvent,
    SideEvent,
    TurnClaimed,
    TurnCommitted,
)
from domain.identifiers import SessionId
from domain.outcomes import KEEP
from domain.recovery import Forget, Seal
from domain.state import Claim, SessionStatus, outcome_summary
from infra import postgres_sql as sql
from infra.chain import ChainHeads, row_payload
from infra.codec import event_to_row, row_to_session_event, row_to_state
from infra.conflict import Conflict, StoreCorrupted
from infra.planning import (
    SEAL_FIELDS,
    Loaded,
    SideRow,
    WritePlan,
    plan_side,
    seal_from,
    seal_row,
)
from infra.tables import EVENT_FIELDS, SESSION_FIELDS, UPDATED_FIELDS


def _projection(record: asyncpg.Record) -> dict[str, Any]:
    row: dict[str, Any] = dict(record)
    row["session_id"] = str(row["session_id"])
    return row


def _event_args(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(field) for field in EVENT_FIELDS)


# --------------------------------------------------------------- the skeleton's steps


async def load(
    conn: asyncpg.Connection, session_id: SessionId, *, lock: bool = False, seal: Seal | None = None
) -> Loaded:
    """The session's row; with `lock`, held (FOR UPDATE) until the transaction ends."""
    query = sql.SELECT_SESSION + " FOR UPDATE" if lock else sql.SELECT_SESSION
    record = await conn.fetchrow(query, session_id)
    if record is None:
        return Loaded(None, seal=seal)
    return Loaded(row_to_state(_projection(record)), ChainHeads.of(record), seal)


async def load_seal(conn: asyncpg.Connection, lookup: str | None) -> Seal | None:
    if lookup is None:
        return None
    record = await conn.fetchrow(sql.SELECT_SEAL, lookup)
    return seal_from(record) if record is not None else None


async def write(conn: asyncpg.Connection, planned: WritePlan) -> None:
    try:
        if planned.projection is not None and planned.expected_version is None:
            await _insert_session(conn, planned)
        else:
            await _append(conn, planned)
        if planned.side is not None:
            await _insert_side(conn, planned.side)
        await _write_seals(conn, planned)
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error
    if planned.events:
        await _wake(conn, planned)


async def _write_seals(conn: asyncpg.Connection, planned: WritePlan) -> None:
    if planned.forget is not None:
        forget = sql.FORGET_ALL if planned.forget.which is Forget.ALL else sql.FORGET_NEXT_TOKENS
        await conn.execute(forget, planned.forget.session_id)
    if planned.seal is not None:
        await conn.execute(sql.KEEP_SEAL, *(planned.seal[field] for field in SEAL_FIELDS))


async def _wake(conn: asyncpg.Connection, planned: WritePlan) -> None:
    """Wake the session's followers; and a replica running its turn, asked to stop it."""
    session_id = planned.events[0]["session_id"]
    await conn.fetchval(sql.WAKE_FOLLOWERS, session_id)
    if any(row["kind"] == EventKind.CANCEL_REQUESTED for row in planned.events):
        await conn.execute(sql.NOTIFY_CANCEL, session_id)


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


async def _insert_side(conn: asyncpg.Connection, side: SideRow) -> None:
    await conn.execute(sql.INSERT_EVENT, *_event_args(side.row))
    if side.heads is not None:
        heads = side.heads
        session_id = side.row["session_id"]
        await conn.execute(sql.UPDATE_REFUSALS, session_id, heads.refusals, heads.refusal_head)


async def record_side(conn: asyncpg.Connection, event: SideEvent) -> None:
    """A fact without a seq (a refusal, a recovery), without reading its session's row:
    linked into the session's side chain by one statement that takes only the side chain's
    columns, or standing alone if it names no session (or one that is not there)."""
    row = event_to_row(event)
    if event.session_id is not None:
        place = await conn.fetchval(
            sql.REFUSE,
            event.session_id,
            row["kind"],
            row["data"],
            row["recorded_at"],
            row_payload(row),
        )
        if place is not None:
            return
    await _insert_side(conn, plan_side(event, Loaded(None)))


async def history(
    conn: asyncpg.Connection, session_id: SessionId, after: int, turn: int | None
) -> list[SessionEvent]:
    rows = await conn.fetch(sql.HISTORY, session_id, after, turn)
    return [row_to_session_event(_projection(row)) for row in rows]


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
    )
    row = event_to_row(draft)
    keep = command.outcome.state is KEEP
    seal = seal_row(command.seal) if command.seal else dict.fromkeys(SEAL_FIELDS)
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
            *(seal[field] for field in SEAL_FIELDS if field not in {"session_id", "turn"}),
        )
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error  # a version or token taken: decide again, locked
    return None if seq is None else replace(draft, seq=seq)
