"""Hashes for events written before the chain existed (used by migration 0003)."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select, update

from infra.chain import link, row_payload
from infra.tables import events, sessions


def _chain(conn: Connection, rows: Iterable[Any]) -> dict[str, Any]:
    """Link one session's rows in place; returns its projection's chain heads."""
    head: str | None = None
    refusals, refusal_head = 0, None
    for row in rows:
        mapping = row._mapping
        if mapping["seq"] is not None:
            head = link(head, mapping["seq"], mapping["turn"], row_payload(mapping))
            values: dict[str, Any] = {"hash": head}
        else:
            refusals += 1
            refusal_head = link(refusal_head, refusals, None, row_payload(mapping))
            values = {"hash": refusal_head, "refusal_seq": refusals}
        conn.execute(update(events).where(events.c.position == mapping["position"]).values(values))
    return {"head_hash": head, "refusals": refusals, "refusal_head": refusal_head}


def backfill(conn: Connection) -> None:
    session_ids = conn.execute(select(sessions.c.session_id)).scalars().all()
    for session_id in session_ids:
        rows = conn.execute(
            select(events)
            .where(events.c.session_id == session_id)
            .order_by(events.c.seq.is_(None), events.c.seq, events.c.position)
        ).all()
        heads = _chain(conn, rows)
        conn.execute(update(sessions).where(sessions.c.session_id == session_id).values(heads))
    orphans = conn.execute(select(events).where(events.c.session_id.is_(None))).all()
    for row in orphans:
        standalone = link(None, 0, None, row_payload(row._mapping))
        conn.execute(
            update(events)
            .where(events.c.position == row._mapping["position"])
            .values(hash=standalone)
        )
