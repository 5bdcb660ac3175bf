"""The event table and the sessions projection (PROTOCOL section 7).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
DIGEST = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=True),
        sa.Column("consumed", DIGEST, nullable=True),
        sa.Column("issued", DIGEST, nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_events"),
        sa.UniqueConstraint("session_id", "seq", name="uq_events_session_id_seq"),
        sa.UniqueConstraint("consumed", name="uq_events_consumed"),
        sa.UniqueConstraint("issued", name="uq_events_issued"),
    )
    op.create_index("ix_events_session_id_position", "events", ["session_id", "position"])
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("token_digest", DIGEST, nullable=True),
        sa.Column("claim_turn", sa.Integer(), nullable=True),
        sa.Column("claim_seq", sa.Integer(), nullable=True),
        sa.Column("state", JSON, nullable=True),
        sa.Column("last_outcome", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_sessions"),
    )


def downgrade() -> None:
    op.drop_table("sessions")
    op.drop_index("ix_events_session_id_position", table_name="events")
    op.drop_table("events")
