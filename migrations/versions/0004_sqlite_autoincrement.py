"""SQLite: never reuse an event position.

Without AUTOINCREMENT SQLite numbers a new row max(rowid) + 1, so after a prune removed the
newest events their positions would be handed out again, and a feed consumer whose cursor
had already passed them would never see the new rows. AUTOINCREMENT keeps the highest
position ever used. PostgreSQL's identity sequence never goes back; nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "events", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
