"""What a turn and a session look like to the client: typed, immutable values.

A live turn stream yields `Record`, `Delta` and finally one `Outcome`; a session's stored
events (`events()` / `follow()`) are `Record`, `Outcome` and `TurnError`, each with its seq.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

Json: TypeAlias = Any  # a JSON value as json.loads returns it
Input: TypeAlias = Mapping[str, Any]  # a turn's input: a JSON object
Status = Literal["finished", "parked", "contended"]


@dataclass(frozen=True, slots=True)
class Record:
    """A journal entry the handler stored (`seq`: its place in the session)."""

    seq: int
    record: Json
    turn: int | None = None  # given by stored events
    void: bool = False  # stored events: the attempt that wrote it did not commit


@dataclass(frozen=True, slots=True)
class Delta:
    """A live increment of the reply (a model's token); never stored, never replayed."""

    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a turn ended. `finished` has `output`, `parked` has `wait`, `contended` has
    `current` (nothing committed, no token issued)."""

    status: Status
    session_id: str
    turn: int
    output: Json = None
    wait: Json = None
    current: int | None = None
    records: tuple[Json, ...] = ()
    seq: int | None = None
    continuation_token: str | None = field(default=None, repr=False)
    replayed: bool = False  # the server gave a committed turn's reply again (same key)
    recovered: bool = False  # learnt after the reply was lost, through a read or the events

    @property
    def committed(self) -> bool:
        return self.status != "contended"


@dataclass(frozen=True, slots=True)
class TurnError:
    """A stored release: the turn failed (`turn-failed`), was cancelled, or its replica shut
    down (`unavailable`); nothing committed."""

    seq: int
    turn: int
    reason: str
    message: str


Event: TypeAlias = Record | Delta | Outcome
StoredEvent: TypeAlias = Record | Outcome | TurnError


@dataclass(frozen=True, slots=True)
class SessionView:
    """GET /v1/session/{id}: `status` is idle, in-flight or closed."""

    session_id: str
    status: str
    turn: int
    version: int
    last_outcome: Json
    updated_at: str


@dataclass(slots=True)
class RecoveryStats:
    """What recovery did, for a client's whole life (the chaos test prints it).

    retries: requests sent again (any cause; `retry_causes` counts them by cause).
    replays: answers marked `Idempotent-Replayed: true` (a lost reply given again).
    recoveries: lost replies recovered, by path: `replay`, `read` (GET the session with the
      consumed token), `events-resume` (a dropped stream resumed from GET .../events).
    resumed_streams: event streams resumed with Last-Event-ID.
    in_flight_waits: `409 in-flight` answers waited out.
    """

    retries: int = 0
    retry_causes: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    recoveries: Counter[str] = field(default_factory=Counter)
    resumed_streams: int = 0
    in_flight_waits: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "retries": self.retries,
            "retry_causes": dict(self.retry_causes),
            "replays": self.replays,
            "recoveries": dict(self.recoveries),
            "resumed_streams": self.resumed_streams,
            "in_flight_waits": self.in_flight_waits,
        }


def fingerprint(input: Input) -> str:
    """The input's digest by value (key order and spacing do not matter)."""
    canonical = json.dumps(input, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def outcome_from(
    body: Mapping[str, Any],
    *,
    session_id: str | None = None,
    seq: int | None = None,
    replayed: bool = False,
    recovered: bool = False,
) -> Outcome:
    """An Outcome from a buffered reply, an SSE outcome event, a stored outcome or a read's
    `lastOutcome` (which names no session: then `session_id` does)."""
    records = body.get("records")
    return Outcome(
        status=cast(Status, body["status"]),
        session_id=str(body.get("sessionId", session_id)),
        turn=int(body["turn"]),
        output=body.get("output"),
        wait=body.get("wait"),
        current=body.get("current"),
        records=tuple(records) if isinstance(records, list) else (),
        seq=seq if seq is not None else body.get("seq"),
        continuation_token=body.get("continuationToken"),
        replayed=replayed,
        recovered=recovered or bool(body.get("recovered")),
    )


def stored_event(body: Mapping[str, Any]) -> StoredEvent | None:
    """One object of GET .../events (None for a type this client does not know)."""
    kind, seq = body.get("type"), int(body["seq"])
    if kind == "record":
        turn = body.get("turn")
        return Record(seq, body.get("record"), turn, bool(body.get("void")))
    if kind == "outcome":
        return outcome_from(body, seq=seq)
    if kind == "error":
        return TurnError(seq, int(body.get("turn", 0)), str(body["reason"]), str(body["message"]))
    return None


def session_view(body: Mapping[str, Any]) -> SessionView:
    return SessionView(
        session_id=str(body["sessionId"]),
        status=str(body["status"]),
        turn=int(body["turn"]),
        version=int(body.get("version", 0)),
        last_outcome=body.get("lastOutcome"),
        updated_at=str(body.get("updatedAt", "")),
    )
