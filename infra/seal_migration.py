"""Moving the sealed tokens out of `committed` events (used by migration 0005).

Until 0005 a commit kept the token it issued, sealed under the one it consumed, in the
event's data, inside the hash chain, where history, the admin API and an export showed it.
Here each such seal leaves the data; the seal of a session's last commit (when no later
turn has been claimed) moves to the recovery table with a fresh default window, and the
session's chains are linked again over the changed data, so `baton verify` holds.
"""

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Select, insert, select, update

from baton.infra.chain import ChainHeads, follow, in_chain_order
from baton.infra.tables import SessionIdType, events, recovery

# The projection as it is at revision 0005 (0006 moves the side chain's heads out of it).
sessions = sa.table(
    "sessions",
    sa.column("session_id", SessionIdType),
    sa.column("status"),
    sa.column("turn"),
    sa.column("head_hash"),
    sa.column("refusals"),
    sa.column("refusal_head"),
)

SEAL_FIELD = "sealedToken"
WINDOW = timedelta(hours=24)  # BATON_RECOVERY_WINDOW's default

# The columns as they are at revision 0005 (later revisions may add others).
_COLUMNS_AT_0005 = (
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


def _events_of(session_id: Any) -> Select[Any]:
    columns = (events.c[name] for name in _COLUMNS_AT_0005)
    return in_chain_order(select(*columns)).where(events.c.session_id == session_id)


def move_seals_out_of_events(conn: Connection) -> None:
    sealed_sessions = conn.execute(
        select(events.c.session_id)
        .where(events.c.kind == "committed", events.c.consumed.is_not(None))
        .distinct()
    ).scalars()
    for session_id in list(sealed_sessions):
        _move_session(conn, session_id)


def _move_session(conn: Connection, session_id: Any) -> None:
    rows = [dict(row._mapping) for row in conn.execute(_events_of(session_id))]
    last_seal = None
    for row in rows:
        data = row["data"]
        if row["kind"] == "committed" and isinstance(data, dict) and SEAL_FIELD in data:
            last_seal = (row, data[SEAL_FIELD])
            row["data"] = {key: value for key, value in data.items() if key != SEAL_FIELD}
    _relink(conn, session_id, rows)
    projection = conn.execute(
        select(sessions.c.status, sessions.c.turn).where(sessions.c.session_id == session_id)
    ).one_or_none()
    if last_seal is None or projection is None:
        return
    commit, sealed = last_seal
    # Only the seal of the commit the session still rests on recovers anything.
    if projection.status == "idle" and projection.turn == commit["turn"]:
        conn.execute(
            insert(recovery).values(
                lookup=commit["consumed"],
                session_id=session_id,
                turn=commit["turn"],
                sealed=sealed,
                expires_at=commit["recorded_at"] + WINDOW,
            )
        )


def _relink(conn: Connection, session_id: Any, rows: list[dict[str, Any]]) -> None:
    heads = ChainHeads()
    for row in rows:
        _, linked, heads = follow(heads, row)
        conn.execute(
            update(events)
            .where(events.c.position == row["position"])
            .values(data=row["data"], hash=linked)
        )
    conn.execute(update(sessions).where(sessions.c.session_id == session_id).values(heads.as_row()))
