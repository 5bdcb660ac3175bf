"""From a decision to the rows a store writes: pure, and the same for every backend.

A store loads a session's projection row (its state and chain heads), lets the command
decide, and hands the decision here: out come the event rows linked into the session's
hash chain, the projection row they fold into (with the new chain head), or the refusal
row linked into the session's refusal chain. The store then only writes them.
"""

from dataclasses import dataclass, field
from typing import Any

from domain.decisions import Decision
from domain.events import RequestRefused
from domain.state import SessionState
from infra.chain import ChainHeads, standalone
from infra.codec import event_to_row, state_to_row

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Loaded:
    """A session as its projection row has it: the state, and the heads of its chains."""

    state: SessionState | None
    heads: ChainHeads = field(default_factory=ChainHeads)


@dataclass(frozen=True, slots=True)
class RefusalRow:
    """A refusal to insert, and the session's refusal heads after it (None: it names no
    session, and stands alone)."""

    row: Row
    heads: ChainHeads | None


@dataclass(frozen=True, slots=True)
class WritePlan:
    events: tuple[Row, ...] = ()  # event rows, each with its `hash`
    projection: Row | None = None  # the projection row the events fold into
    expected_version: int | None = None  # the version the row must still be at; None: new
    refusal: RefusalRow | None = None


def plan(loaded: Loaded, decision: Decision[Any]) -> WritePlan:
    """The rows that carry out `decision` on the session as `loaded`."""
    if decision.refused is not None:
        return WritePlan(refusal=plan_refusal(decision.refused, loaded))
    heads, rows = loaded.heads, []
    for event in decision.events:
        row = event_to_row(event)
        row["hash"], heads = heads.append(row)
        rows.append(row)
    if decision.after is None:
        return WritePlan()
    projection = {**state_to_row(decision.after), **heads.as_row()}
    version = loaded.state.version if loaded.state is not None else None
    return WritePlan(tuple(rows), projection, version)


def plan_refusal(refused: RequestRefused, loaded: Loaded) -> RefusalRow:
    """A refusal row: linked into its session's refusal chain, or standing alone when it
    names no session that exists."""
    row = event_to_row(refused)
    if refused.session_id is None or loaded.state is None:
        row["refusal_seq"], row["hash"] = None, standalone(row)
        return RefusalRow(row, None)
    row["refusal_seq"], row["hash"], heads = loaded.heads.refuse(row)
    return RefusalRow(row, heads)
