"""The migrations build exactly the tables infra/tables.py declares, on both backends."""

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, insert, inspect, select

from infra.database import create_engine, writing
from infra.migrate import alembic_config, current_revision, head_revision, upgrade_to_head
from infra.settings import Settings
from infra.tables import events, metadata
from tests.databases import fresh_database
from tests.infra.test_store import now


@pytest.fixture
async def empty_engine(backend: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with fresh_database(backend, tmp_path) as url:
        engine = create_engine(Settings(database_url=url))
        yield engine
        await engine.dispose()


async def test_upgrade_head_on_an_empty_database_matches_the_tables(empty_engine) -> None:  # type: ignore[no-untyped-def]
    assert await current_revision(empty_engine) is None
    await upgrade_to_head(empty_engine)

    async with empty_engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )
    assert differences == []
    assert await current_revision(empty_engine) == head_revision()


async def test_upgrade_is_idempotent_and_downgrade_removes_every_table(empty_engine) -> None:  # type: ignore[no-untyped-def]
    await upgrade_to_head(empty_engine)
    await upgrade_to_head(empty_engine)  # a restart migrates again: nothing to do

    async with empty_engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) <= {"alembic_version"}


async def test_a_pruned_position_is_never_handed_out_again(empty_engine) -> None:  # type: ignore[no-untyped-def]
    """A feed consumer's cursor may already be past the newest row when it is pruned."""

    await upgrade_to_head(empty_engine)
    row = {
        "kind": "refused",
        "data": {"reason": "unknown-session"},
        "recorded_at": now(),
        "hash": "0" * 64,
    }
    async with writing(empty_engine).begin() as conn:
        await conn.execute(insert(events), [row, row, row])
        newest = (
            (await conn.execute(select(events.c.position).order_by(events.c.position.desc())))
            .scalars()
            .first()
        )
        await conn.execute(delete(events).where(events.c.position == newest))
        await conn.execute(insert(events), [row])
        after = (
            (await conn.execute(select(events.c.position).order_by(events.c.position.desc())))
            .scalars()
            .first()
        )
    assert after > newest
