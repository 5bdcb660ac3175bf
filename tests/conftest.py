"""Fixtures shared by every layer: one database per backend per run, migrated to head."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import SessionId
from baton.domain.ports import SessionStore
from baton.infra.database import create_engine
from baton.infra.history import SessionReader
from baton.infra.migrate import migrate
from baton.infra.settings import Settings
from baton.infra.stores import Database, open_database
from tests.databases import BACKENDS, MEMORY, POSTGRESQL, fresh_database, in_own_loop
from tests.domain.fakes import InMemorySessionStore
from tests.pgbouncer import PGBOUNCER, PgBouncer, running_pgbouncer


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every storage and protocol test runs once on SQLite and once on PostgreSQL (and, in
    modules marked `pgbouncer`, once more through PgBouncer: see pytest_generate_tests)."""
    return str(request.param)


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The backends of a test that asks for one: the in-memory store first for a test
    marked `every_store`, PgBouncer last in a module marked `pgbouncer`. A test that
    parametrizes `backend` itself keeps its own list. (A parametrize mark, added before
    pytest reads the marks, so that it also takes precedence over the fixture's params.)"""
    if "backend" not in metafunc.fixturenames:
        return
    markers = metafunc.definition.iter_markers("parametrize")
    if any(marker.args and marker.args[0] == "backend" for marker in markers):
        return
    backends = list(BACKENDS)
    if metafunc.definition.get_closest_marker("every_store") is not None:
        backends.insert(0, MEMORY)
    if metafunc.definition.get_closest_marker("pgbouncer") is not None:
        backends.append(PGBOUNCER)
    if backends != list(BACKENDS):
        metafunc.definition.add_marker(pytest.mark.parametrize("backend", backends, indirect=True))


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """One PgBouncer in transaction mode for the run, started when first asked for."""
    with running_pgbouncer() as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def direct_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The run's database for `backend`, as the server itself answers it (never a pooler),
    migrated to head before any test sees it: a test that only asks for `settings` must
    not depend on another test having migrated it first (under xdist it may run first)."""
    real = POSTGRESQL if backend == PGBOUNCER else backend
    with fresh_database(real, tmp_path_factory.mktemp(backend)) as url:
        in_own_loop(migrate(Settings(database_url=url)))
        yield url


@pytest.fixture(scope="session")
def settings(backend: str, direct_url: str, request: pytest.FixtureRequest) -> Settings:
    if backend == PGBOUNCER:
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.settings(direct_url)
    return Settings(database_url=direct_url)


@pytest.fixture(scope="session")
def database_url(settings: Settings) -> str:
    """The URL the server is given: through PgBouncer for backend "pgbouncer"."""
    return settings.database_url


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The run's database, built by the migrations (never by create_all, see `direct_url`),
    on the direct URL as `baton migrate` does; tests read and write it there too."""
    engine = create_engine(settings, direct=True)
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
