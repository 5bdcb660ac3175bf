"""What an export's events mean, checked before an import writes a row.

Hashes prove a file is what some database wrote, not that what it says could have
happened: anyone can write a file of well-linked nonsense (a commit outside any claim, a
token spent twice, a turn that skips ahead), and an import would fold it into a projection
the server then trusts. So each session's events are decoded as the server decodes them
(infra/codec.py), folded by the domain's own `evolve`, and each must be a step the domain's
decisions can take from the state before it:

- a session begins with `started` at seq 1 (which claims turn 1), and starts once;
- a `claimed` needs an idle session, and its turn is one more than the last committed;
- `record`, `renewed`, `cancel-requested` (once a turn), `released`, `expired` and
  `committed` belong to the claim in flight, and name its turn;
- an `expired` is followed by the claim or close that took the lapsed claim over;
- `closed` needs an idle session, names the last committed turn (or the turn released just
  before it, for a failed start), and ends the session: only refusals and recoveries after;
- every event's principal is one the session is visible to (domain/principals.py);
- a `committed` consumes the token the previous commit issued (the first consumes none)
  and issues a token never seen before in the file;
- a recovery names a turn that committed.

The seqs and refusal places running 1, 2, 3... is the chain check's (infra/audit.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton.domain.events import (
    CancelRequested,
    ClaimExpired,
    ClaimRenewed,
    EventKind,
    RecoveredVia,
    SessionClosed,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    TurnReleased,
)
from baton.domain.principals import visible_to
from baton.domain.refusals import RefusalReason
from baton.domain.state import SessionState, SessionStatus, evolve
from baton.infra.chain import ChainHeads, Folded
from baton.infra.codec import row_to_session_event
from baton.infra.import_lines import Parsed, refuse
from baton.infra.tables import PRINCIPAL_LENGTH

OWNER_LENGTH = 100  # the projection's claim_owner column


@dataclass(slots=True)
class _Walk:
    """One session's events, followed in seq order, then its side facts."""

    issued: dict[str, int]  # every token the file issued so far, and the line that did
    state: SessionState | None = None
    previous: SessionEvent | None = None
    heads: ChainHeads = field(default_factory=ChainHeads)
    current: int = 0  # the line that issued the current token

    def event(self, line: Parsed) -> None:
        event = _decode(line)
        problem = _typed(event, line.row["data"]) or _illegal(self.state, self.previous, event)
        if problem is None and isinstance(event, TurnCommitted):
            problem = self._tokens(event)
        if problem is not None:
            refuse(line.number, problem)
        try:
            self.state = evolve(self.state, event)
        except (ValueError, TypeError) as error:
            refuse(line.number, str(error))
        if isinstance(event, TurnCommitted):
            self.issued[event.issued], self.current = line.number, line.number
        self.previous, self.heads = event, ChainHeads(line.row["hash"])

    def _tokens(self, event: TurnCommitted) -> str | None:
        assert self.state is not None  # noqa: S101 - _illegal refused a commit before a start
        if event.consumed != self.state.token_digest:
            if self.state.token_digest is None:
                return "the first commit of a session consumes no token (none was issued yet)"
            return f"'committed' consumes a token other than the one line {self.current} issued"
        if event.issued in self.issued:
            return f"'committed' issues a token already seen, at line {self.issued[event.issued]}"
        return None


def check_session(group: Sequence[Parsed], issued: dict[str, int]) -> Folded:
    """One session's lines (in chain order, chains checked): refused naming the first line
    that could not have happened, or the projection they fold into. Records the tokens the
    session issued in `issued`."""
    walk = _Walk(issued)
    events = [line for line in group if line.row["seq"] is not None]
    for line in events:
        walk.event(line)
    if walk.state is None:
        refuse(group[0].number, "a session with refusals or recoveries but no events")
    if isinstance(walk.previous, ClaimExpired):
        refuse(events[-1].number, _AFTER_EXPIRY.format(kind="the end of the session"))
    sides = [line for line in group if line.row["seq"] is None]
    for line in sides:
        problem = _side_problem(line.row, walk.state)
        if problem is not None:
            refuse(line.number, problem)
    if sides:
        walk.heads = ChainHeads(walk.heads.head_hash, len(sides), sides[-1].row["hash"])
    return Folded(walk.state, walk.heads)


# --------------------------------------------------------------- decoding and types


def _decode(line: Parsed) -> SessionEvent:
    """The event as the server reads it back; its data's shape is the codec's to know."""
    kind = line.row["kind"]
    try:
        return row_to_session_event(line.row)
    except KeyError as missing:
        refuse(line.number, f"the data of a {kind!r} event lacks {missing}")
    except (ValueError, TypeError, AttributeError) as error:
        refuse(line.number, f"the data of a {kind!r} event cannot be read: {error}")


def _typed(event: SessionEvent, data: dict[str, Any]) -> str | None:
    """What the codec takes on trust and the tables would refuse late, in a driver error."""
    if not _text(event.principal, PRINCIPAL_LENGTH, optional=True):
        return f"the principal must be text of {PRINCIPAL_LENGTH} characters at most, or null"
    if isinstance(event, SessionStarted | TurnClaimed) and not isinstance(event.input, dict):
        return f"the input of a {event.KIND.value!r} event must be a JSON object"
    if isinstance(event, SessionStarted | TurnClaimed | ClaimRenewed):
        lease = event.lease
        if not _text(lease.owner, OWNER_LENGTH) or not _aware(lease.until):
            return "a lease names its owner (text) and a leaseUntil with a time zone"
    if isinstance(event, TurnCommitted) and data["status"] not in {"finished", "parked"}:
        return "an outcome's status is 'finished' or 'parked'"
    return None


def _text(value: Any, limit: int, *, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, str) and len(value) <= limit


def _aware(value: datetime) -> bool:
    return value.tzinfo is not None


def _side_problem(row: dict[str, Any], state: SessionState | None) -> str | None:
    data = row["data"]
    if not _text(data.get("principal"), PRINCIPAL_LENGTH, optional=True):
        return f"the principal must be text of {PRINCIPAL_LENGTH} characters at most, or null"
    if row["kind"] == EventKind.REFUSED:
        reasons = {reason.value for reason in RefusalReason}
        return None if data.get("reason") in reasons else "a refusal names a known reason"
    turn, committed = data.get("turn"), state.turn if state is not None else 0
    if data.get("via") not in {via.value for via in RecoveredVia}:
        return "a recovery says how it recovered (via read, events or replay)"
    if type(turn) is not int or not 1 <= turn <= committed:
        return f"a recovery of turn {turn!r}, which never committed (the last is {committed})"
    return None


# --------------------------------------------------------------- the order of events

_AFTER_EXPIRY = "{kind} after 'expired': an expiry is followed by the claim or close that caused it"


def _illegal(
    state: SessionState | None, previous: SessionEvent | None, event: SessionEvent
) -> str | None:
    """Why `event` could not follow `previous` (which left `state`), or None."""
    kind = repr(event.KIND.value)
    if state is None:
        return _first(event)
    if isinstance(event, SessionStarted):
        return f"a second 'started' (seq {event.seq}): a session starts once"
    if state.status is SessionStatus.CLOSED:
        return f"{kind} after 'closed': only refusals and recoveries follow a close"
    if isinstance(previous, ClaimExpired) and not isinstance(event, TurnClaimed | SessionClosed):
        return _AFTER_EXPIRY.format(kind=kind)
    if visible_to(state, event.principal) is None:
        return f"{kind} by {event.principal!r}: the session is {state.owner!r}'s alone"
    if isinstance(event, TurnClaimed):
        return _claim(state, event)
    if isinstance(event, SessionClosed):
        return _close(state, previous, event)
    return _in_turn(state, event)


def _first(event: SessionEvent) -> str | None:
    if isinstance(event, SessionStarted) and event.seq == 1 and event.turn == 1:
        return None
    return (
        "a session begins with 'started' at seq 1, turn 1, not"
        f" {event.KIND.value!r} at seq {event.seq}, turn {event.turn}"
    )


def _claim(state: SessionState, event: TurnClaimed) -> str | None:
    if state.claim is not None:
        return (
            f"'claimed' while turn {state.claim.turn} is in flight: a claim needs an idle session"
        )
    if event.turn != state.turn + 1:
        return f"'claimed' turn {event.turn}: after turn {state.turn} the next is {state.turn + 1}"
    return None


def _close(state: SessionState, previous: SessionEvent | None, event: SessionClosed) -> str | None:
    if state.claim is not None:
        return f"'closed' while turn {state.claim.turn} is in flight: only an idle session closes"
    released = previous.turn if isinstance(previous, TurnReleased) else state.turn
    if event.turn not in {state.turn, released}:
        return f"'closed' names turn {event.turn}, but the last committed turn is {state.turn}"
    return None


def _in_turn(state: SessionState, event: SessionEvent) -> str | None:
    kind = repr(event.KIND.value)
    if state.claim is None:
        return f"{kind} of turn {event.turn} outside a claim: no turn is in flight"
    if event.turn != state.claim.turn:
        return f"{kind} names turn {event.turn}, but the claim in flight is turn {state.claim.turn}"
    if isinstance(event, CancelRequested) and state.cancel_requested:
        return "a second 'cancel-requested' in one turn: asking twice is asking once"
    return None
