"""Hashes for events written before the chain existed (used by migration 0003)."""

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Select, select, update

from baton.infra.chain import ChainHeads, follow, in_chain_order, standalone
from baton.infra.tables import SessionIdType, events

# The projection as it is at revision 0003 (later revisions move and add columns).
sessions = sa.table(
    "sessions",
    sa.column("session_id", SessionIdType),
    sa.column("head_hash"),
    sa.column("refusals"),
    sa.column("refusal_head"),
)


def _chain(conn: Connection, rows: Iterable[Any]) -> dict[str, Any]:
    """Link one session's rows in place; returns its projection's chain heads."""
    heads = ChainHeads()
    for row in rows:
        mapping = row._mapping
        place, linked, heads = follow(heads, mapping)
        values: dict[str, Any] = {"hash": linked}
        if mapping["seq"] is None:
            values["refusal_seq"] = place
        conn.execute(update(events).where(events.c.position == mapping["position"]).values(values))
    return heads.as_row()


# The columns as they are at revision 0003: later revisions may add others, which a
# database being migrated through 0003 does not have yet.
_COLUMNS_AT_0003 = (
    "position",
    "session_id",
    "seq",
    "refusal_seq",
    "kind",
    "turn",
    "consumed",
    "issued",
    "data",
    "recorded_at",
)


def _events_at_0003() -> Select[Any]:
    return select(*(events.c[name] for name in _COLUMNS_AT_0003))


def backfill(conn: Connection) -> None:
    session_ids = conn.execute(select(sessions.c.session_id)).scalars().all()
    for session_id in session_ids:
        query = in_chain_order(_events_at_0003()).where(events.c.session_id == session_id)
        heads = _chain(conn, conn.execute(query).all())
        conn.execute(update(sessions).where(sessions.c.session_id == session_id).values(heads))
    orphans = conn.execute(_events_at_0003().where(events.c.session_id.is_(None))).all()
    for row in orphans:
        conn.execute(
            update(events)
            .where(events.c.position == row._mapping["position"])
            .values(hash=standalone(row._mapping))
        )
