"""What `baton prune` removed: each pruned session's id and the heads its chains had.

`baton verify --against ANCHOR` reports a session the anchor names and the database no
longer holds as pruned, not as tampered with, when it is here with chains at least as long
as the anchor's (infra/anchors.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "pruned",
        sa.Column("session_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("head_hash", DIGEST, nullable=True),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("refusal_head", DIGEST, nullable=True),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_pruned")),
    )


def downgrade() -> None:
    op.drop_table("pruned")
