"""The facts. Every event is one row of the event table (PROTOCOL section 7).

Session events each take the next `seq` of their session; a refusal takes none, so it can be
recorded without moving the session's version. Every fact names the `principal` whose
request caused it (a turn's records, renewals and end: the principal that claimed it), or
None when the server authenticates no one (domain/principals.py).
"""

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from baton.domain.identifiers import SessionId, TokenDigest
from baton.domain.json import JsonObject, JsonValue
from baton.domain.outcomes import HandlerOutcome
from baton.domain.refusals import RefusalReason
from baton.domain.values import value


class EventKind(StrEnum):
    """The `kind` column: every fact's name (PROTOCOL section 7)."""

    STARTED = "started"  # also the claim of turn 1
    CLAIMED = "claimed"
    RENEWED = "renewed"
    EXPIRED = "expired"
    RECORD = "record"
    COMMITTED = "committed"
    RELEASED = "released"
    CLOSED = "closed"
    CANCEL_REQUESTED = "cancel-requested"
    REFUSED = "refused"  # no seq: a refusal moves no version
    RECOVERED = "recovered"  # no seq: a read with the token the last turn consumed


class ReleaseCause(StrEnum):
    FAILED = "failed"  # the handler raised or returned something that cannot commit
    TIMED_OUT = "timed-out"  # the turn ran past the turn timeout and was cancelled
    CANCELLED = "cancelled"  # the holder of the token cancelled it (PROTOCOL section 6.5)
    SHUT_DOWN = "shut-down"  # its replica stopped before it could finish
    INVALID_INPUT = "invalid-input"  # the handler rejected the turn's input
    UNAVAILABLE = "unavailable"  # Baton's database failed under it: the client retries


class RecoveredVia(StrEnum):
    """How a client recovered a lost reply (PROTOCOL section 6)."""

    READ = "read"  # GET /v1/session/{id}
    EVENTS = "events"  # GET /v1/session/{id}/events, or a WebSocket resume
    REPLAY = "replay"  # a retry with the Idempotency-Key of a committed turn


class CloseCause(StrEnum):
    START_FAILED = "start-failed"  # PROTOCOL section 4: a failed first turn closes the session
    CLIENT = "client"  # the holder of the current token closed it (DELETE /v1/session/{id})


@value
class Lease:
    """Who holds a claim, and until when. A claim whose lease has lapsed (its process died,
    or stopped renewing) can be taken over by the next continue with the current token."""

    owner: str
    until: datetime

    def lapsed(self, at: datetime) -> bool:
        return self.until <= at


@value(kw_only=True)
class SessionStarted:
    """A session came to be; this is also the claim of turn 1."""

    KIND: ClassVar[EventKind] = EventKind.STARTED

    session_id: SessionId
    seq: int
    turn: int
    input: JsonObject
    lease: Lease
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class TurnClaimed:
    """A valid token won the session for one turn."""

    KIND: ClassVar[EventKind] = EventKind.CLAIMED

    session_id: SessionId
    seq: int
    turn: int
    input: JsonObject
    lease: Lease
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class ClaimRenewed:
    """A running turn extended its lease (the heartbeat of a live claim)."""

    KIND: ClassVar[EventKind] = EventKind.RENEWED

    session_id: SessionId
    seq: int
    turn: int
    lease: Lease
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class ClaimExpired:
    """A claim's lease lapsed and a new claim took the session; the old turn cannot commit."""

    KIND: ClassVar[EventKind] = EventKind.EXPIRED

    session_id: SessionId
    seq: int
    turn: int
    owner: str  # whose lease lapsed
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class RecordAppended:
    """A journal entry the handler emitted while its turn ran."""

    KIND: ClassVar[EventKind] = EventKind.RECORD

    session_id: SessionId
    seq: int
    turn: int
    record: JsonValue
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class TurnCommitted:
    """The turn's outcome and state were kept; `consumed` is spent, `issued` is the next token."""

    KIND: ClassVar[EventKind] = EventKind.COMMITTED

    session_id: SessionId
    seq: int
    turn: int
    consumed: TokenDigest | None
    issued: TokenDigest
    outcome: HandlerOutcome
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class TurnReleased:
    """The turn ended without committing; its records are void and the token stays valid."""

    KIND: ClassVar[EventKind] = EventKind.RELEASED

    session_id: SessionId
    seq: int
    turn: int
    cause: ReleaseCause
    error: str | None
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class CancelRequested:
    """The holder of the current token asked for the running turn to stop."""

    KIND: ClassVar[EventKind] = EventKind.CANCEL_REQUESTED

    session_id: SessionId
    seq: int
    turn: int  # the turn it asked to stop
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class SessionClosed:
    KIND: ClassVar[EventKind] = EventKind.CLOSED

    session_id: SessionId
    seq: int
    turn: int
    cause: CloseCause
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class RequestRefused:
    """A request the protocol turned away. `session_id` is None when it named no session."""

    KIND: ClassVar[EventKind] = EventKind.REFUSED

    session_id: SessionId | None
    turn: int | None
    reason: RefusalReason
    presented_id: str | None
    at: datetime
    principal: str | None = None


@value(kw_only=True)
class Recovered:
    """A client recovered turn `turn` with the token it consumed. Like a refusal, it takes
    no seq: reading changes no state."""

    KIND: ClassVar[EventKind] = EventKind.RECOVERED

    session_id: SessionId
    turn: int
    via: RecoveredVia
    at: datetime
    principal: str | None = None


SessionEvent = (
    SessionStarted
    | TurnClaimed
    | ClaimRenewed
    | ClaimExpired
    | RecordAppended
    | TurnCommitted
    | TurnReleased
    | CancelRequested
    | SessionClosed
)
SideEvent = RequestRefused | Recovered
"""Facts that take no seq: they change no state, and chain apart from the session's events."""
Event = SessionEvent | SideEvent


def kind_of(event: Event) -> EventKind:
    """The event's name in the `kind` column."""
    return event.KIND
