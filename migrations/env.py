"""Alembic environment. Baton calls it with a connection (infra.migrate); the `alembic`
command line gets one from BATON_DATABASE_DIRECT_URL (else BATON_DATABASE_URL), set up
exactly as the server's."""

import asyncio

from alembic import context
from sqlalchemy import Connection

from baton.infra.database import create_engine
from baton.infra.settings import Settings
from baton.infra.tables import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine() -> None:
    engine = create_engine(Settings.from_env(), direct=True)
    async with engine.begin() as conn:
        await conn.run_sync(run_migrations)
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    asyncio.run(run_with_own_engine())
