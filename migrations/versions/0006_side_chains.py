"""The side chains' heads leave the projection row for a table of their own.

A refusal (or a recovery) of a known session links into that session's side chain, whose
head and count sat in the `sessions` row: every refusal updated, and so locked, the very row
its owner's turns write, and a flood of bad tokens for one session queued behind (and ahead
of) its real turns. In `side_chains` they no longer touch it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "side_chains",
        sa.Column("session_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("refusal_head", DIGEST, nullable=True),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_side_chains")),
    )
    op.execute(
        "INSERT INTO side_chains (session_id, refusals, refusal_head) "
        "SELECT session_id, refusals, refusal_head FROM sessions WHERE refusals > 0"
    )
    with op.batch_alter_table("sessions") as sessions:
        sessions.drop_column("refusal_head")
        sessions.drop_column("refusals")


def downgrade() -> None:
    with op.batch_alter_table("sessions") as sessions:
        sessions.add_column(sa.Column("refusals", sa.Integer(), nullable=False, server_default="0"))
        sessions.add_column(sa.Column("refusal_head", DIGEST, nullable=True))
    op.execute(
        "UPDATE sessions SET refusals = (SELECT c.refusals FROM side_chains AS c "
        "WHERE c.session_id = sessions.session_id), refusal_head = (SELECT c.refusal_head "
        "FROM side_chains AS c WHERE c.session_id = sessions.session_id) "
        "WHERE session_id IN (SELECT session_id FROM side_chains)"
    )
    op.drop_table("side_chains")
