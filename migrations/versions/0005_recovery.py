"""Recovery through the API alone (PROTOCOL section 6).

- recovery: each committed turn's issued token, sealed under the token it consumed, kept
  apart from the hash-chained events (the seal used to sit in the `committed` event's data,
  where anyone with one old token and read access to history or an export could unseal
  every later token).
- followers: the sessions a client follows from another replica, so writes can wake it.
- sessions.cancel_requested: a running turn was asked to stop.

The seals in existing `committed` events move out: the one of each session's last commit
(while no later turn is claimed) into `recovery`, the rest are dropped (a later claim spent
them), and every chain is linked again over the changed data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "recovery",
        sa.Column("lookup", DIGEST, nullable=False),
        sa.Column("session_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.String(64), nullable=True),
        sa.Column("key_digest", DIGEST, nullable=True),
        sa.Column("fingerprint", DIGEST, nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lookup", name=op.f("pk_recovery")),
    )
    op.create_index(op.f("ix_recovery_session_id"), "recovery", ["session_id"])
    op.create_index(op.f("ix_recovery_expires_at"), "recovery", ["expires_at"])
    op.create_table(
        "followers",
        sa.Column("session_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_followers")),
    )
    with op.batch_alter_table("sessions") as sessions:
        sessions.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    from baton.infra.seal_migration import move_seals_out_of_events

    move_seals_out_of_events(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("sessions") as sessions:
        sessions.drop_column("cancel_requested")
    op.drop_table("followers")
    op.drop_index(op.f("ix_recovery_expires_at"), table_name="recovery")
    op.drop_index(op.f("ix_recovery_session_id"), table_name="recovery")
    op.drop_table("recovery")
