"""Refusal budgets: refused requests per client in the current window, shared by replicas.

With BATON_REFUSAL_LIMIT set, a client (its principal, or its address) past the limit is
answered 429 until its window ends, and its refusals are no longer stored (api/
refusal_limit.py); the count is one row per client, upserted by whichever replica refused.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refusal_budgets",
        sa.Column("client", sa.String(200), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client", name=op.f("pk_refusal_budgets")),
    )
    op.create_index(op.f("ix_refusal_budgets_window_end"), "refusal_budgets", ["window_end"])


def downgrade() -> None:
    op.drop_index(op.f("ix_refusal_budgets_window_end"), table_name="refusal_budgets")
    op.drop_table("refusal_budgets")
