"""Alembic, driven from code: upgrade to head, and tell whether a database is at head."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.ports import StoreUnavailable
from baton.infra.database import create_engine, writing
from baton.infra.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        # migrations/env.py runs on this connection instead of opening its own.
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


# Any fixed 64-bit number, the same in every replica: the key of the migration lock.
MIGRATION_LOCK_KEY = 0x6261746F6E  # "baton"


async def upgrade_to_head(engine: AsyncEngine) -> str | None:
    """Migrate to head; returns the revision the database was at (None: it was empty).

    Replicas that start at once take turns: on PostgreSQL the upgrade runs under a
    transaction-scoped advisory lock, so the second replica waits, then finds the schema at
    head and does nothing (on SQLite, BEGIN IMMEDIATE already serialises them)."""
    async with writing(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        before = await conn.run_sync(_current_revision)
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))
    return before


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None if it was never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    # Read alembic's table directly: MigrationContext would log at INFO on every probe.
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


async def migrate(settings: Settings) -> str | None:
    """Migrate the database of `settings` to head; the revision it was at (None: empty). A
    database that cannot be opened or reached is StoreUnavailable."""
    engine = create_engine(settings, direct=True)  # DDL never goes through a pooler
    try:
        return await upgrade_to_head(engine)
    except (SQLAlchemyError, OSError) as error:
        reason = getattr(error, "orig", None) or error
        raise StoreUnavailable(f"{type(reason).__name__}: {reason}") from error
    finally:
        await engine.dispose()
