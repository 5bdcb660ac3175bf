"""The hash chain that makes the event table tamper-evident.

Each session's events form a chain in `seq` order, and its refusals a second chain in
`refusal_seq` order:

    hash = SHA-256(previous hash ‖ position ‖ turn ‖ canonical JSON of the other fields)

where the previous hash of a chain's first event is 32 zero bytes, position (the seq, or the
refusal's place in its chain) and turn (0 when none) are 8-byte big-endian integers, and the
canonical JSON holds `consumed`, `data`, `issued`, `kind`, `recordedAt` and `sessionId`,
with sorted keys, no spaces, UTF-8. An edited payload, a deleted event or two swapped events
break the chain at the first event they touch. The global position and the transaction id
are left out on purpose: an export imported elsewhere gets new ones and verifies the same.

Framing position and turn as integers, not JSON, is what lets PostgreSQL compute a link in
SQL (`sha256(prev || int8send(seq) || int8send(turn) || payload)`) inside the single
statement that appends the event, where the seq is only known to the database.
"""

import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection

from baton.domain.json import canonical_encoder
from baton.domain.state import SessionState, evolve
from baton.domain.values import value
from baton.infra.codec import row_to_session_event, state_to_row
from baton.infra.tables import events
from baton.infra.utc_text import utc_micro

GENESIS = bytes(32)
# The stdlib's encoder, not msgspec: every stored hash was computed over exactly this text.
_canonical = canonical_encoder(allow_nan=False)
_INT = 8  # bytes per framed integer


def time_text(at: datetime) -> str:
    """recorded_at as the chain sees it: fixed width, UTC, microseconds
    (`%Y-%m-%dT%H:%M:%S.%fZ` for years 1000-9999; every append computes it)."""
    return utc_micro(at) + "Z"


def payload(
    *,
    session_id: str | None,
    kind: str,
    consumed: str | None,
    issued: str | None,
    data: Any,
    recorded_at: datetime,
) -> bytes:
    fields = {
        "consumed": consumed,
        "data": data,
        "issued": issued,
        "kind": kind,
        "recordedAt": time_text(recorded_at),
        "sessionId": session_id,
    }
    return _canonical(fields).encode("utf-8")


def row_payload(row: Mapping[Any, Any]) -> bytes:
    """The payload of an event-table row (or of codec.event_to_row's dict)."""
    session_id = row["session_id"]
    return payload(
        session_id=str(session_id) if session_id is not None else None,
        kind=row["kind"],
        consumed=row["consumed"],
        issued=row["issued"],
        data=row["data"],
        recorded_at=row["recorded_at"],
    )


def link(previous: str | None, position: int, turn: int | None, body: bytes) -> str:
    """The hash of one event, hex, chained to `previous` (hex; None: a chain's start)."""
    head = bytes.fromhex(previous) if previous is not None else GENESIS
    framed = position.to_bytes(_INT, "big", signed=True) + (turn or 0).to_bytes(
        _INT, "big", signed=True
    )
    return hashlib.sha256(head + framed + body).hexdigest()


def standalone(row: Mapping[Any, Any]) -> str:
    """The hash of a refusal that names no session: it links to nothing."""
    return link(None, 0, None, row_payload(row))


@value
class ChainHeads:
    """The ends of a session's two chains: its events' (the projection row's `head_hash`)
    and its side chain's (the `side_chains` row: how many facts, the last one's hash)."""

    head_hash: str | None = None
    refusals: int = 0
    refusal_head: str | None = None

    def append(self, row: Mapping[Any, Any]) -> tuple[str, "ChainHeads"]:
        """Link a session event (an event-table row or codec.event_to_row's dict)."""
        linked = link(self.head_hash, row["seq"], row["turn"], row_payload(row))
        # Built directly: dataclasses.replace finds the fields anew each call (a few µs).
        return linked, ChainHeads(linked, self.refusals, self.refusal_head)

    def refuse(self, row: Mapping[Any, Any]) -> tuple[int, str, "ChainHeads"]:
        """Link a refusal of this session: its place in the refusal chain, and its hash."""
        place = self.refusals + 1
        linked = link(self.refusal_head, place, None, row_payload(row))
        return place, linked, ChainHeads(self.head_hash, place, linked)

    def as_row(self) -> dict[str, Any]:
        """The heads as the projection row kept all of them until revision 0006 (for the
        migrations before it, which write the schema of their time)."""
        return {"head_hash": self.head_hash, **self.side_row()}

    def side_row(self) -> dict[str, Any]:
        """The side chain's heads, as the `side_chains` table keeps them."""
        return {"refusals": self.refusals, "refusal_head": self.refusal_head}

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> "ChainHeads":
        """From a projection row joined with its side chain's (absent: no side facts)."""
        return cls(row["head_hash"], row["refusals"] or 0, row["refusal_head"])


# --------------------------------------------------------------- following a session's chains


def in_chain_order(query: Select[Any]) -> Select[Any]:
    """`query` over the event table, limited to rows that belong to a session and ordered
    the way its chains run: each session's events by seq, then its refusals by their place
    (position breaks ties among refusals written before they had a place, see 0003)."""
    return query.where(events.c.session_id.is_not(None)).order_by(
        events.c.session_id,
        events.c.seq.is_(None),
        events.c.seq,
        events.c.refusal_seq,
        events.c.position,
    )


def follow(heads: ChainHeads, row: Mapping[Any, Any]) -> tuple[int, str, ChainHeads]:
    """Link one of a session's rows (an event or a refusal) after `heads`: its place in
    its chain (the seq, or the refusal's place), its hash, and the heads after it."""
    if row["seq"] is not None:
        linked, after = heads.append(row)
        return int(row["seq"]), linked, after
    return heads.refuse(row)


@value
class Folded:
    """A session's projection as its events make it: the domain state and the chain heads."""

    state: SessionState
    heads: ChainHeads

    def row(self) -> dict[str, Any]:
        """The projection row."""
        return {**state_to_row(self.state), "head_hash": self.heads.head_hash}

    def side_row(self) -> dict[str, Any] | None:
        """The `side_chains` row, if the session has facts without a seq."""
        heads = self.heads
        return {"session_id": self.state.session_id, **heads.side_row()} if heads.refusals else None


def fold_session(rows: Iterable[Mapping[Any, Any]]) -> Folded | None:
    """Fold one session's rows, in chain order, into its projection, taking the chain heads
    from the stored hashes (`baton verify` is what recomputes them); None with no events."""
    state: SessionState | None = None
    heads = ChainHeads()
    for row in rows:
        if row["seq"] is not None:
            state = evolve(state, row_to_session_event(row))
            heads = replace(heads, head_hash=row["hash"])
        else:
            heads = replace(heads, refusals=heads.refusals + 1, refusal_head=row["hash"])
    return Folded(state, heads) if state is not None else None


async def by_session(
    conn: AsyncConnection, query: Select[Any], batch: int = 1000
) -> AsyncIterator[list[Mapping[Any, Any]]]:
    """The rows of `query` (ordered by session), streamed, one session's rows at a time."""
    group: list[Mapping[Any, Any]] = []
    async for row in await conn.stream(query.execution_options(yield_per=batch)):
        mapping = row._mapping
        if group and group[0]["session_id"] != mapping["session_id"]:
            yield group
            group = []
        group.append(mapping)
    if group:
        yield group
