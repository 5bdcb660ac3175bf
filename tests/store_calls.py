"""The store's commands built from plain arguments, for tests that script many of them.

Each helper builds one command (domain/commands.py) and hands it to the store's method of
the same name, so a scripted history reads as a list of calls.
"""

from datetime import datetime

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
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    TurnCommitted,
    TurnReleased,
)
from baton.domain.identifiers import SessionId, TokenDigest
from baton.domain.json import JsonObject, JsonValue
from baton.domain.outcomes import Contended, HandlerOutcome
from baton.domain.ports import SessionStore
from baton.domain.recovery import ReadAccess, Seal
from baton.domain.refusals import Refusal
from baton.domain.state import Claim, SessionState


async def start(
    store: SessionStore, session_id: SessionId, input: JsonObject, at: datetime, lease: Lease
) -> ClaimGranted:
    granted = await store.start(
        StartSession(session_id=session_id, at=at, input=input, lease=lease)
    )
    assert isinstance(granted, ClaimGranted)  # an unkeyed start always starts
    return granted


async def claim(
    store: SessionStore,
    session_id: SessionId,
    presented: TokenDigest | None,
    input: JsonObject,
    at: datetime,
    lease: Lease,
) -> ClaimGranted | Refusal:
    command = ClaimTurn(session_id=session_id, at=at, presented=presented, input=input, lease=lease)
    return await store.claim(command)


async def renew(
    store: SessionStore, session_id: SessionId, claim: Claim, lease: Lease, at: datetime
) -> ClaimRenewed | Contended:
    return await store.renew(RenewClaim(session_id=session_id, at=at, claim=claim, lease=lease))


async def append_record(
    store: SessionStore, session_id: SessionId, claim: Claim, record: JsonValue, at: datetime
) -> RecordAppended | Contended:
    command = AppendRecord(session_id=session_id, at=at, claim=claim, record=record)
    return await store.append_record(command)


async def commit(
    store: SessionStore,
    session_id: SessionId,
    claim: Claim,
    outcome: HandlerOutcome,
    issued: TokenDigest,
    at: datetime,
    *,
    consumed: TokenDigest | None,
    seal: Seal | None = None,
) -> TurnCommitted | Contended:
    command = CommitTurn(
        session_id=session_id,
        at=at,
        claim=claim,
        consumed=consumed,
        issued=issued,
        outcome=outcome,
        seal=seal,
    )
    return await store.commit(command)


async def release(
    store: SessionStore,
    session_id: SessionId,
    claim: Claim,
    cause: ReleaseCause,
    error: str | None,
    at: datetime,
    *,
    close: CloseCause | None = None,
) -> TurnReleased | None:
    command = ReleaseTurn(
        session_id=session_id, at=at, claim=claim, cause=cause, error=error, close=close
    )
    return await store.release(command)


async def close(
    store: SessionStore, session_id: SessionId, presented: TokenDigest | None, at: datetime
) -> SessionState | Refusal:
    return await store.close(CloseSession(session_id=session_id, at=at, presented=presented))


async def read(
    store: SessionStore, session_id: SessionId, presented: TokenDigest | None, at: datetime
) -> ReadAccess | Refusal:
    return await store.read(ReadSession(session_id=session_id, at=at, presented=presented))


async def cancel(
    store: SessionStore, session_id: SessionId, presented: TokenDigest | None, at: datetime
) -> CancelAnswer | Refusal:
    return await store.request_cancel(
        RequestCancel(session_id=session_id, at=at, presented=presented)
    )
