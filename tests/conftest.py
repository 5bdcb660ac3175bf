"""Fixtures shared by every layer: one database per backend per run, migrated to head."""

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.ports import SessionStore
from infra.database import create_engine
from infra.migrate import upgrade_to_head
from infra.settings import Settings
from infra.stores import open_store
from tests.databases import BACKENDS, fresh_database


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every storage and protocol test runs once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(backend, tmp_path_factory.mktemp(backend)) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The run's database, built by the migrations (never by create_all)."""
    engine = create_engine(settings)
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def store(settings: Settings, engine: AsyncEngine) -> AsyncIterator[SessionStore]:
    """The store the server uses for this backend, on the run's migrated database."""
    async with open_store(settings) as opened:
        yield opened
