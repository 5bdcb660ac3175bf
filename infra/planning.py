"""From a decision to the rows a store writes: pure, and the same for every backend.

A store loads a session's projection row (its state and chain heads) and the seal the
command asks for, lets the command decide, and hands the decision here: out come the event
rows linked into the session's hash chain and the projection row they fold into (with the
new chain head), or a fact without a seq (a refusal, a recovery) linked into the session's
side chain, and the recovery rows to keep or forget. The store then only writes them.
"""

from dataclasses import field
from datetime import datetime
from typing import Any

from baton.domain.decisions import Decision
from baton.domain.events import SideEvent
from baton.domain.identifiers import SessionId
from baton.domain.recovery import Forget, Idempotency, KeyDigest, Seal
from baton.domain.state import SessionState
from baton.domain.values import value
from baton.infra.chain import ChainHeads, standalone
from baton.infra.codec import event_to_row, state_to_row

Row = dict[str, Any]


@value
class Loaded:
    """A session as its projection row has it (the state, the heads of its chains), and
    the seal the command asked for, if there is one."""

    state: SessionState | None
    heads: ChainHeads = field(default_factory=ChainHeads)
    seal: Seal | None = None


@value
class SideRow:
    """A fact without a seq to insert, and the session's side-chain heads after it (None:
    it names no session, and stands alone)."""

    row: Row
    heads: ChainHeads | None


@value
class Forgetting:
    session_id: SessionId
    which: Forget


@value
class WritePlan:
    events: tuple[Row, ...] = ()  # event rows, each with its `hash`
    projection: Row | None = None  # the projection row the events fold into
    expected_version: int | None = None  # the version the row must still be at; None: new
    side: SideRow | None = None
    seal: Row | None = None  # a recovery row to keep, replacing one of the same lookup
    forget: Forgetting | None = None


def plan(loaded: Loaded, decision: Decision[Any]) -> WritePlan:
    """The rows that carry out `decision` on the session as `loaded`."""
    side = plan_side(decision.side_event, loaded) if decision.side_event else None
    seal = seal_row(decision.seal) if decision.seal else None
    forget = None
    if decision.forget is not None and decision.after is not None:
        forget = Forgetting(decision.after.session_id, decision.forget)
    if decision.after is None:
        return WritePlan(side=side, seal=seal, forget=forget)
    # The loaded session may be another than the one the events change: a keyed start whose
    # key once started a session that has since expired starts a new one.
    same = loaded.state is not None and loaded.state.session_id == decision.after.session_id
    heads, rows = loaded.heads if same else ChainHeads(), []
    for event in decision.events:
        row = event_to_row(event)
        row["hash"], heads = heads.append(row)
        rows.append(row)
    projection = {**state_to_row(decision.after), "head_hash": heads.head_hash}
    version = loaded.state.version if same and loaded.state is not None else None
    return WritePlan(tuple(rows), projection, version, side, seal, forget)


def plan_side(event: SideEvent, loaded: Loaded) -> SideRow:
    """A fact without a seq: linked into its session's side chain, or standing alone when
    it names no session that exists."""
    row = event_to_row(event)
    if event.session_id is None or loaded.state is None:
        return SideRow(_alone(row), None)
    row["refusal_seq"], row["hash"], heads = loaded.heads.refuse(row)
    return SideRow(row, heads)


def _alone(row: Row) -> Row:
    """A fact that stands alone. One that names a session no longer there (pruned between
    the read that decided it and this write) names it as an unknown session's refusal
    does, in its data: a row with a session id but no place in its side chain would be a
    broken link of a session that has no chain any more."""
    if row["session_id"] is not None:
        data = {**row["data"], "sessionId": str(row["session_id"])}
        row = {**row, "session_id": None, "data": data}
    return {**row, "refusal_seq": None, "hash": standalone(row)}


def seal_row(seal: Seal) -> Row:
    idempotency = seal.idempotency
    return {
        "lookup": seal.lookup,
        "session_id": seal.session_id,
        "turn": seal.turn,
        "sealed": seal.sealed,
        "key_digest": idempotency.key if idempotency else None,
        "fingerprint": idempotency.fingerprint if idempotency else None,
        "expires_at": seal.expires_at,
    }


SEAL_FIELDS = ("lookup", "session_id", "turn", "sealed", "key_digest", "fingerprint", "expires_at")


def seal_from(row: Any, expires_at: datetime | None = None) -> Seal:
    """A recovery row (any mapping of SEAL_FIELDS) as the domain's Seal."""
    key, fingerprint = row["key_digest"], row["fingerprint"]
    return Seal(
        lookup=row["lookup"],
        session_id=SessionId(str(row["session_id"])),
        turn=row["turn"],
        sealed=row["sealed"],
        idempotency=Idempotency(KeyDigest(key), fingerprint) if key and fingerprint else None,
        expires_at=expires_at if expires_at is not None else row["expires_at"],
    )
