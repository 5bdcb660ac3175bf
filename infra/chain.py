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
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)
_INT = 8  # bytes per framed integer


def time_text(at: datetime) -> str:
    """recorded_at as the chain sees it: fixed width, UTC, microseconds."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


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


@dataclass(frozen=True, slots=True)
class ChainHeads:
    """The ends of a session's two chains, as its projection row keeps them."""

    head_hash: str | None = None
    refusals: int = 0
    refusal_head: str | None = None

    def append(self, row: Mapping[Any, Any]) -> tuple[str, "ChainHeads"]:
        """Link a session event (an event-table row or codec.event_to_row's dict)."""
        linked = link(self.head_hash, row["seq"], row["turn"], row_payload(row))
        return linked, replace(self, head_hash=linked)

    def refuse(self, row: Mapping[Any, Any]) -> tuple[int, str, "ChainHeads"]:
        """Link a refusal of this session: its place in the refusal chain, and its hash."""
        place = self.refusals + 1
        linked = link(self.refusal_head, place, None, row_payload(row))
        return place, linked, replace(self, refusals=place, refusal_head=linked)

    def as_row(self) -> dict[str, Any]:
        return {
            "head_hash": self.head_hash,
            "refusals": self.refusals,
            "refusal_head": self.refusal_head,
        }

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> "ChainHeads":
        return cls(row["head_hash"], row["refusals"], row["refusal_head"])
