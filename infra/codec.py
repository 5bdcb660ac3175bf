"""Events and session state to and from table rows. The `data` column's shape lives here."""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from baton.domain.events import (
    CancelRequested,
    ClaimExpired,
    ClaimRenewed,
    CloseCause,
    Event,
    EventKind,
    Lease,
    RecordAppended,
    Recovered,
    ReleaseCause,
    RequestRefused,
    SessionClosed,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    TurnReleased,
    kind_of,
)
from baton.domain.identifiers import SessionId, TokenDigest
from baton.domain.json import JsonObject, JsonValue
from baton.domain.outcomes import KEEP, Finished, HandlerOutcome, Parked
from baton.domain.state import Claim, SessionState, SessionStatus
from baton.infra.utc_text import utc_isoformat

Row = Mapping[Any, Any]  # a SQLAlchemy RowMapping, or any dict of the same keys


def _outcome_data(outcome: HandlerOutcome) -> JsonObject:
    data: JsonObject = {"status": outcome.status}
    if isinstance(outcome, Finished):
        data["output"] = outcome.output
    else:
        data["wait"] = outcome.wait
    if outcome.state is not KEEP:
        data["state"] = outcome.state  # absent: the turn left the state as it was
    return data


def _lease_data(lease: Lease) -> JsonObject:
    return {"owner": lease.owner, "leaseUntil": utc_isoformat(lease.until)}


def _lease_from(data: dict[str, Any]) -> Lease:
    return Lease(owner=data["owner"], until=datetime.fromisoformat(data["leaseUntil"]))


def _event_data(event: Event) -> JsonObject:
    """The event's own data, and who caused it: in the data, so the hash chain covers it."""
    data = _own_data(event)
    if event.principal is not None:
        data["principal"] = event.principal
    return data


def _own_data(event: Event) -> JsonObject:
    if isinstance(event, RequestRefused | Recovered):
        return _side_data(event)
    if isinstance(event, SessionStarted | TurnClaimed):
        return {"input": event.input, **_lease_data(event.lease)}
    if isinstance(event, ClaimRenewed):
        return _lease_data(event.lease)
    if isinstance(event, ClaimExpired):
        return {"owner": event.owner}
    if isinstance(event, RecordAppended):
        return {"record": event.record}
    if isinstance(event, TurnCommitted):
        return _outcome_data(event.outcome)
    if isinstance(event, TurnReleased):
        return {"cause": event.cause.value, "error": event.error}
    if isinstance(event, SessionClosed):
        return {"cause": event.cause.value}
    return {}  # CancelRequested: its kind and turn say it all


def _side_data(event: RequestRefused | Recovered) -> JsonObject:
    if isinstance(event, Recovered):
        return {"turn": event.turn, "via": event.via.value}
    data: JsonObject = {"reason": event.reason.value}
    if event.presented_id is not None:
        data["sessionId"] = event.presented_id
    return data


def event_to_row(event: Event) -> dict[str, Any]:
    committed = event if isinstance(event, TurnCommitted) else None
    side = isinstance(event, RequestRefused | Recovered)
    seq = None if isinstance(event, RequestRefused | Recovered) else event.seq
    return {
        "session_id": event.session_id,
        "seq": seq,
        "kind": kind_of(event).value,
        # A fact without a seq belongs to no turn's attempt (a recovery names its turn in
        # its data, which the hash chain covers).
        "turn": None if side else event.turn,
        "consumed": committed.consumed if committed else None,
        "issued": committed.issued if committed else None,
        "data": _event_data(event),
        "recorded_at": event.at,
    }


def _outcome_from(data: dict[str, Any]) -> HandlerOutcome:
    state = data.get("state", KEEP)
    if data["status"] == "finished":
        return Finished(output=data.get("output"), state=state)
    return Parked(wait=data.get("wait"), state=state)


def row_to_session_event(row: Row) -> SessionEvent:
    kind, data = EventKind(row["kind"]), cast(dict[str, Any], row["data"])
    common: dict[str, Any] = {
        "session_id": SessionId(row["session_id"]),
        "seq": row["seq"],
        "turn": row["turn"],
        "at": row["recorded_at"],
        "principal": data.get("principal"),
    }
    decode = _DECODERS.get(kind)
    if decode is None:
        raise ValueError(f"{kind.value!r} is not a session event")
    return decode(row, data, common)


def _claim_from(row: Row, data: dict[str, Any], common: dict[str, Any]) -> SessionEvent:
    claim = SessionStarted if row["kind"] == EventKind.STARTED else TurnClaimed
    return claim(input=cast(JsonObject, data["input"]), lease=_lease_from(data), **common)


def _committed_from(row: Row, data: dict[str, Any], common: dict[str, Any]) -> SessionEvent:
    consumed = row["consumed"]
    return TurnCommitted(
        consumed=TokenDigest(consumed) if consumed is not None else None,
        issued=TokenDigest(row["issued"]),
        outcome=_outcome_from(data),
        **common,
    )


def _released_from(row: Row, data: dict[str, Any], common: dict[str, Any]) -> SessionEvent:
    error = data.get("error")
    return TurnReleased(
        cause=ReleaseCause(data["cause"]), error=error if isinstance(error, str) else None, **common
    )


_DECODERS: dict[EventKind, Callable[[Row, dict[str, Any], dict[str, Any]], SessionEvent]] = {
    EventKind.STARTED: _claim_from,
    EventKind.CLAIMED: _claim_from,
    EventKind.RENEWED: lambda _, data, common: ClaimRenewed(lease=_lease_from(data), **common),
    EventKind.EXPIRED: lambda _, data, common: ClaimExpired(owner=data["owner"], **common),
    EventKind.RECORD: lambda _, data, common: RecordAppended(record=data["record"], **common),
    EventKind.COMMITTED: _committed_from,
    EventKind.RELEASED: _released_from,
    EventKind.CLOSED: lambda _, data, common: SessionClosed(
        cause=CloseCause(data["cause"]), **common
    ),
    EventKind.CANCEL_REQUESTED: lambda _, data, common: CancelRequested(**common),
}


def state_to_row(state: SessionState) -> dict[str, Any]:
    return {
        "session_id": state.session_id,
        "version": state.version,
        "turn": state.turn,
        "status": state.status.value,
        "token_digest": state.token_digest,
        "claim_turn": state.claim.turn if state.claim else None,
        "claim_seq": state.claim.seq if state.claim else None,
        "claim_owner": state.lease.owner if state.lease else None,
        "lease_until": state.lease.until if state.lease else None,
        "state": state.state,
        "last_outcome": state.last_outcome,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "cancel_requested": state.cancel_requested,
        "owner": state.owner,
    }


def row_to_state(row: Row) -> SessionState:
    claim_turn, claim_seq = row["claim_turn"], row["claim_seq"]
    return SessionState(
        session_id=SessionId(row["session_id"]),
        version=row["version"],
        turn=row["turn"],
        status=SessionStatus(row["status"]),
        token_digest=row["token_digest"],
        claim=Claim(claim_turn, claim_seq) if claim_turn is not None else None,
        lease=Lease(row["claim_owner"], row["lease_until"]) if row["claim_owner"] else None,
        state=cast(JsonValue, row["state"]),
        last_outcome=row["last_outcome"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        cancel_requested=bool(row["cancel_requested"]),
        owner=row["owner"],
    )
