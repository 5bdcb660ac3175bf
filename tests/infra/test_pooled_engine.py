"""The SQLAlchemy engine through PgBouncer in transaction mode (the operator's commands use
it): many clients' transactions share a few server sessions, and none meets a prepared
statement of another's, nor misses one of its own. Without the pooler set-up of
infra/database.py this fails at once: `prepared statement "__asyncpg_stmt_7__" does not
exist`."""

import asyncio

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.database import create_engine
from baton.infra.settings import Settings
from baton.infra.tables import events
from tests.pgbouncer import PGBOUNCER

CLIENTS = 15
ROUNDS = 20


@pytest.mark.parametrize("backend", [PGBOUNCER], indirect=True)
async def test_concurrent_transactions_through_pgbouncer_keep_their_statements(
    settings: Settings,
    engine: AsyncEngine,  # the database migrated, directly
) -> None:
    assert settings.behind_pooler
    pooled = create_engine(settings)

    async def client(number: int) -> None:
        for round_number in range(ROUNDS):
            async with pooled.connect() as conn:
                value = await conn.scalar(text(f"SELECT {number} + :x"), {"x": round_number})
                assert value == number + round_number
                # A streamed read (a portal of a prepared statement), as verify and export do.
                streamed = await conn.stream(select(func.count()).select_from(events))
                assert len([row async for row in streamed]) == 1

    try:
        await asyncio.gather(*(client(number) for number in range(CLIENTS)))
    finally:
        await pooled.dispose()
