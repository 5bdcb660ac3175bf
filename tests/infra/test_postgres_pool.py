"""infra/postgres_pool.py: what the pool does for every statement the store sends."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
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


PID = "SELECT pg_backend_pid()"


@pytest.fixture
async def pool(direct_url: str) -> AsyncIterator[PostgresPool]:
    opened = await PostgresPool(postgres_dsn(direct_url), size=4).open()
    yield opened
    await opened.dispose()


async def backend(pool: PostgresPool) -> int:
    async with pool.connection() as conn:
        return int(await conn.fetchval(PID))


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_a_connection_back_cleanly_is_kept_and_lent_again(pool: PostgresPool) -> None:
    """Kept, not given back to asyncpg (whose release costs a task and two loop passes)."""
    first = await backend(pool)
    assert pool.db.get_idle_size() == 0  # asyncpg still counts it lent: it is kept here
    assert pool.connections_in_use() == 0  # but it is not in use
    assert await backend(pool) == first


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_a_connection_back_with_an_exception_goes_back_to_asyncpg(pool: PostgresPool) -> None:
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with pool.connection() as conn:
            await conn.fetchval("SELECT 1 / 0")
    assert pool.db.get_idle_size() == 1
    with pytest.raises(asyncio.CancelledError):
        async with pool.connection() as conn:
            raise asyncio.CancelledError
    assert pool.db.get_idle_size() == 1
    async with pool.connection() as conn:
        await conn.execute("BEGIN")  # left open: asyncpg rolls it back
    assert pool.db.get_idle_size() == 1
    assert pool.connections_in_use() == 0


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_at_most_half_the_pool_is_kept(pool: PostgresPool) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            await stack.enter_async_context(pool.connection())
        assert pool.connections_in_use() == 4
    assert pool.db.get_idle_size() == 2  # two kept, two back with asyncpg
    assert pool.connections_in_use() == 0


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_after_an_outage_no_kept_connection_is_lent_again(pool: PostgresPool) -> None:
    kept = await backend(pool)
    async with pool.connection() as held:
        await pool.expire_connections()  # an outage, while this one is out
        held_pid = await held.fetchval(PID)
    fresh = {await backend(pool)}
    async with pool.connection() as a, pool.connection() as b:
        fresh |= {await a.fetchval(PID), await b.fetchval(PID)}
    assert not fresh & {kept, held_pid}


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_a_kept_connection_closed_under_it_is_replaced(
    pool: PostgresPool, direct_url: str
) -> None:
    kept = await backend(pool)
    async with pool.connection() as conn:  # the kept one; closed, as by a server restart
        conn.terminate()
    assert await backend(pool) != kept
    async with pool.db.acquire() as other:
        await other.execute("SELECT pg_terminate_backend($1)", await backend(pool))
    with contextlib.suppress(*postgres_pool.OUTAGES):
        await backend(pool)  # the statement that finds it gone fails, as before
    assert await backend(pool) > 0


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
@pytest.mark.parametrize("settle", [0.0, 0.2], ids=["at-once", "after-the-close-lands"])
async def test_an_outage_that_closed_the_kept_connections_expires_them_quietly(
    pool: PostgresPool, settle: float
) -> None:
    """What `make test`'s outage test met: the server ends every connection, the first
    statement to fail expires the pool, and giving the kept ones back to asyncpg raced the
    server's close of the same connections (InternalClientError, a 500). Expiring them
    must raise nothing, whenever the close reaches asyncpg."""
    async with pool.connection() as a, pool.connection() as b:
        kept = {await a.fetchval(PID), await b.fetchval(PID)}
    async with pool.db.acquire() as other:
        await other.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(kept)
        )
    await asyncio.sleep(settle)
    await pool.expire_connections()
    assert pool.connections_in_use() == 0
    assert await backend(pool) not in kept


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_a_kept_connection_closed_as_the_pool_expires_it_raises_nothing(
    pool: PostgresPool,
) -> None:
    """The race itself, made certain: the server's close of a kept connection is handled
    by asyncpg in the same pass of the event loop as the expiry. Given back through
    asyncpg's release (which runs in a task of its own, a pass later), the connection was
    already asyncpg's again and the release raised InternalClientError."""
    async with pool.connection() as conn:
        raw = conn._con  # the connection itself, as asyncpg's close sees it
    asyncio.get_running_loop().call_soon(raw.terminate)
    await pool.expire_connections()
    await asyncio.sleep(0)
    assert pool.connections_in_use() == 0
    assert await backend(pool) > 0
