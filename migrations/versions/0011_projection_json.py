"""The projection's handler state and last outcome keep their JSON text as written.

`sessions.state` and `sessions.last_outcome` were `jsonb` on PostgreSQL, which renormalises
numbers: a state of `{"x": 1e20}` came back as `{"x": 100000000000000000000}`, an integer,
where SQLite gave back the float the handler wrote (and a handler that handed that state
back as it was then failed the rule of 64-bit integers, domain.json.json_problem). As
`json`, as `events.data` has been since 0003, PostgreSQL keeps the text, and both databases
give a handler back exactly what it stored. Nothing queries into these columns, so nothing
jsonb offers is lost, and the server no longer parses every state it is sent into jsonb.

Rows written before keep the numbers jsonb made of them. SQLite stores JSON as text
already: nothing changes there. On a large sessions table this rewrites the table under a
lock that holds writes back while it runs: run it in a quiet moment.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("state", "last_outcome")


def _alter(to: sa.types.TypeEngine[object], cast: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.alter_column(
            "sessions",
            column,
            type_=to,
            existing_nullable=True,
            postgresql_using=f"{column}::{cast}",
        )


def upgrade() -> None:
    _alter(sa.JSON(), "json")


def downgrade() -> None:
    _alter(postgresql.JSONB(), "jsonb")
