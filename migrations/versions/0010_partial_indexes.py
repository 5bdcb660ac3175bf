"""Partial indexes for the event columns most events leave NULL.

`consumed`, `issued` and `refusal_seq` were unique constraints, and `(txid, position)` a plain
index. Both backends index NULLs as well, so every append wrote an entry into each of them
that no rule or lookup uses: a claim consumes and issues nothing, only a refusal has a place
in a side chain, and SQLite leaves txid NULL. As partial indexes (`WHERE ... IS NOT NULL`)
the same values stay unique (NULLs never collided), and SQLite's group-commit floor of a
turn's writes rose from about 3,900 to 4,500 turns/s (bench/baselines/sql_floor_sqlite.py,
four alternating rounds).

On a large events table this rebuilds three indexes (PostgreSQL, under a lock that holds
writes back while it runs) or copies the table (SQLite, as 0004 did): run it in a quiet
moment.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name: (columns, the column whose NULLs the index leaves out)
UNIQUE = {
    "uq_events_consumed": (["consumed"], "consumed"),
    "uq_events_issued": (["issued"], "issued"),
    "uq_events_session_id_refusal_seq": (["session_id", "refusal_seq"], "refusal_seq"),
}
TXID_INDEX = "ix_events_txid_position"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        # SQLite cannot drop a table's own constraint: the table is copied without them (and
        # keeps AUTOINCREMENT, which reflection cannot see, 0004).
        with op.batch_alter_table(
            "events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as events:
            for name in UNIQUE:
                events.drop_constraint(name, type_="unique")
        op.drop_index(TXID_INDEX, table_name="events")
        op.create_index(
            TXID_INDEX, "events", ["txid", "position"], sqlite_where=sa.text("txid IS NOT NULL")
        )
    else:
        for name in UNIQUE:
            op.drop_constraint(name, "events", type_="unique")
    for name, (columns, nullable) in UNIQUE.items():
        where = sa.text(f"{nullable} IS NOT NULL")
        op.create_index(
            name, "events", columns, unique=True, sqlite_where=where, postgresql_where=where
        )


def downgrade() -> None:
    for name in UNIQUE:
        op.drop_index(name, table_name="events")
    if _sqlite():
        op.drop_index(TXID_INDEX, table_name="events")
        with op.batch_alter_table(
            "events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as events:
            for name, (columns, _) in UNIQUE.items():
                events.create_unique_constraint(name, columns)
        op.create_index(TXID_INDEX, "events", ["txid", "position"])
    else:
        for name, (columns, _) in UNIQUE.items():
            op.create_unique_constraint(name, "events", columns)
