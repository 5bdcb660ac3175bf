"""infra/postgres_pool.py: what the pool does for every statement the store sends."""

import asyncio

import pytest

from baton.infra import postgres_pool
from baton.infra.postgres_pool import PostgresPool
from tests.databases import POSTGRESQL
from tests.infra.test_history import postgres_dsn

QUERY = "SELECT $1::int + 1"
PREPARED = "SELECT prepare_time FROM pg_prepared_statements WHERE statement = $1"


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_a_statement_is_prepared_and_planned_afresh_once_its_lifetime_is_over(
    direct_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan made while a table was tiny must not outlive the table's growth (a batched
    claim then scans the whole table): PostgreSQL keeps a prepared statement's plan, so the
    statement itself is prepared again after STATEMENT_LIFETIME."""
    monkeypatch.setattr(postgres_pool, "STATEMENT_LIFETIME", 0.2)
    pool = await PostgresPool(postgres_dsn(direct_url), size=1).open()
    try:
        async with pool.db.acquire() as conn:
            assert await conn.fetchval(QUERY, 1) == 2
            (first,) = [row["prepare_time"] for row in await conn.fetch(PREPARED, QUERY)]
            assert await conn.fetchval(QUERY, 1) == 2
            assert [row["prepare_time"] for row in await conn.fetch(PREPARED, QUERY)] == [first]
            await asyncio.sleep(0.4)
            assert await conn.fetchval(QUERY, 1) == 2
            times = [row["prepare_time"] for row in await conn.fetch(PREPARED, QUERY)]
        assert max(times) > first  # prepared again, so planned again
    finally:
        await pool.dispose()
