"""Tamper evidence and a safe global feed.

- events.hash: each session event links to the one before it (SHA-256, see infra/chain.py);
  refusals of a session link in their own sequence (events.refusal_seq).
- sessions.head_hash, refusals, refusal_head: the heads of both chains, so an append needs
  no extra read.
- events.txid (PostgreSQL): the inserting transaction, so the global feed can serve rows
  in an order that never skips one that commits late.
- events.data becomes `json` on PostgreSQL: it keeps the text as written, so what was hashed
  can be derived again exactly (jsonb would renormalise numbers).

Existing events get their hashes computed here, session by session.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TXID_DEFAULT = "(pg_current_xact_id()::text::bigint)"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("events") as events:
        events.add_column(sa.Column("refusal_seq", sa.Integer(), nullable=True))
        events.add_column(sa.Column("hash", sa.String(64), nullable=True))
        events.add_column(
            sa.Column(
                "txid",
                sa.BigInteger(),
                nullable=True,
                server_default=sa.text(TXID_DEFAULT) if postgres else None,
            )
        )
        events.create_unique_constraint(
            "uq_events_session_id_refusal_seq", ["session_id", "refusal_seq"]
        )
        if postgres:
            events.alter_column(
                "data",
                type_=sa.JSON(),
                existing_nullable=False,
                postgresql_using="data::json",
            )
    with op.batch_alter_table("sessions") as sessions:
        sessions.add_column(sa.Column("head_hash", sa.String(64), nullable=True))
        sessions.add_column(sa.Column("refusals", sa.Integer(), nullable=False, server_default="0"))
        sessions.add_column(sa.Column("refusal_head", sa.String(64), nullable=True))
    op.create_index("ix_events_txid_position", "events", ["txid", "position"])
    from baton.infra.chain_backfill import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_events_txid_position", table_name="events")
    with op.batch_alter_table("sessions") as sessions:
        sessions.drop_column("refusal_head")
        sessions.drop_column("refusals")
        sessions.drop_column("head_hash")
    with op.batch_alter_table("events") as events:
        if postgres:
            events.alter_column(
                "data",
                type_=sa.dialects.postgresql.JSONB(),
                existing_nullable=False,
                postgresql_using="data::jsonb",
            )
        events.drop_constraint("uq_events_session_id_refusal_seq", type_="unique")
        events.drop_column("txid")
        events.drop_column("hash")
        events.drop_column("refusal_seq")
