"""The PostgreSQL store's one-statement paths: a claim, record, renewal or commit whose
every check is a condition of the statement that writes it (infra/postgres_sql.py). None
means a condition did not hold; the store then lets the domain decide why, on the row read
again (infra/postgres_store.py). A unique key that says no is a Conflict.
"""

from dataclasses import replace
from typing import Any

import asyncpg

from baton.domain.commands import AppendRecord, ClaimTurn, CommitTurn, RenewClaim
from baton.domain.decisions import ClaimGranted
from baton.domain.events import (
    ClaimRenewed,
    Lease,
    RecordAppended,
    TurnClaimed,
    TurnCommitted,
)
from baton.domain.outcomes import KEEP
from baton.domain.state import Claim, SessionStatus, outcome_summary
from baton.infra import postgres_sql as sql
from baton.infra.chain import row_payload
from baton.infra.codec import event_to_row, row_to_state
from baton.infra.conflict import Conflict, StoreCorrupted
from baton.infra.planning import SEAL_FIELDS, seal_row
from baton.infra.postgres_writes import projection_of


async def fast_claim(conn: asyncpg.Connection, command: ClaimTurn) -> ClaimGranted | None:
    """Claim in one statement if the presented token is current, the session idle and the
    principal's to see; None when it is not (the domain then decides why, on a read)."""
    draft, args = claim_args(command)
    try:
        record = await conn.fetchrow(sql.CLAIM, *args)
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error  # the version is taken: decide again, locked
    return None if record is None else granted(draft, record)


def claim_args(command: ClaimTurn) -> tuple[TurnClaimed, tuple[Any, ...]]:
    """The claimed event as drafted (its seq and turn are the row's to give) and CLAIM's
    parameters, in order."""
    draft = TurnClaimed(
        session_id=command.session_id,
        seq=0,
        turn=0,
        input=command.input,
        lease=command.lease,
        at=command.at,
        principal=command.principal,
    )
    row = event_to_row(draft)
    return draft, (
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
        command.principal,
    )


def granted(draft: TurnClaimed, record: asyncpg.Record) -> ClaimGranted:
    """The claim as it landed: the projection row it returned, checked against the rule."""
    state = row_to_state(projection_of(record))
    claimed = replace(draft, seq=state.version, turn=state.turn + 1)
    if state.claim != Claim(turn=claimed.turn, seq=claimed.seq):
        raise StoreCorrupted(f"a claim on session {draft.session_id} did not land as decided")
    return ClaimGranted(claimed, state)


async def fast_record(conn: asyncpg.Connection, command: AppendRecord) -> RecordAppended | None:
    """Append a record while the claim holds; None when it no longer does."""
    appended = RecordAppended(
        session_id=command.session_id,
        seq=0,
        turn=command.claim.turn,
        record=command.record,
        at=command.at,
        principal=command.principal,
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
        principal=command.principal,
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
    draft, args = commit_args(command)
    try:
        seq = await conn.fetchval(sql.COMMIT, *args)
    except asyncpg.UniqueViolationError as error:
        raise Conflict(str(error)) from error  # a version or token taken: decide again, locked
    return None if seq is None else replace(draft, seq=seq)


def commit_args(command: CommitTurn) -> tuple[TurnCommitted, tuple[Any, ...]]:
    """The committed event as drafted (its seq is the row's to give) and COMMIT's
    parameters, in order."""
    draft = TurnCommitted(
        session_id=command.session_id,
        seq=0,
        turn=command.claim.turn,
        consumed=command.consumed,
        issued=command.issued,
        outcome=command.outcome,
        at=command.at,
        principal=command.principal,
    )
    row = event_to_row(draft)
    keep = command.outcome.state is KEEP
    seal = seal_row(command.seal) if command.seal else dict.fromkeys(SEAL_FIELDS)
    return draft, (
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
