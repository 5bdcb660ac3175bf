"""Fixtures shared by every layer: one database per backend per run, migrated to head."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import SessionId
from baton.domain.ports import SessionStore
from baton.infra.database import create_engine
from baton.infra.history import SessionReader
from baton.infra.migrate import upgrade_to_head
from baton.infra.settings import Settings
from baton.infra.stores import Database, open_database
from tests.databases import BACKENDS, MEMORY, fresh_database
from tests.domain.fakes import InMemorySessionStore


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
async def opened(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Database]:
    """The store and reader the server uses for this backend, on the run's migrated database."""
    async with open_database(settings) as database:
        yield database


@pytest.fixture(scope="session")
def store(backend: str, request: pytest.FixtureRequest) -> SessionStore:
    """The store the server uses for this backend, or the in-memory one (EVERY_STORE)."""
    if backend == MEMORY:
        return InMemorySessionStore()
    opened: Database = request.getfixturevalue("opened")
    return opened.store


@dataclass(frozen=True, slots=True)
class Stored:
    kind: str
    consumed: str | None


@pytest.fixture
def stored_events(
    backend: str, store: SessionStore, request: pytest.FixtureRequest
) -> Callable[[SessionId], Awaitable[list[Stored]]]:
    """A session's events, refusals included, in the order they were written: read back
    through the reader, or from the in-memory store."""

    async def from_reader(session_id: SessionId) -> list[Stored]:
        reader: SessionReader = request.getfixturevalue("reader")
        history = await reader.session_events(session_id) or []
        return [Stored(event.kind, event.consumed) for event in history]

    async def from_memory(session_id: SessionId) -> list[Stored]:
        assert isinstance(store, InMemorySessionStore)
        return [Stored(kind, consumed) for kind, consumed in store.written(session_id)]

    return from_memory if backend == MEMORY else from_reader


@pytest.fixture(scope="session")
def reader(opened: Database) -> SessionReader:
    return opened.reader
