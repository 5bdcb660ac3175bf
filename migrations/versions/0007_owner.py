"""Principals: the session's owner, the principal that started it.

Sessions started before this revision, or while the server authenticates no one, have none
and stay open to every principal (domain/principals.py). Who caused each event is in the
event's data, under the hash chain; the projection keeps only the owner, folded from the
`started` event.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as sessions:
        sessions.add_column(sa.Column("owner", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as sessions:
        sessions.drop_column("owner")
