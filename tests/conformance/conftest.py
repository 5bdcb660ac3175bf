"""The conformance suite runs every case over each transport, on each backend, against a
real `baton serve` process that shares the run's database."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conformance.clients import TRANSPORTS, TurnClient
from tests.e2e.server import TEST_HANDLER, BatonServer


@pytest.fixture(scope="session")
def server(
    database_url: str, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BatonServer]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with BatonServer(database_url, log, "--handler", TEST_HANDLER) as running:
        yield running


@pytest.fixture(params=sorted(TRANSPORTS))
def turns(request: pytest.FixtureRequest, server: BatonServer) -> TurnClient:
    client: TurnClient = TRANSPORTS[request.param](server.url)
    return client


@pytest.fixture
def release_file(tmp_path: Path) -> Path:
    """A held turn (tests.handlers) runs on once this file exists."""
    return tmp_path / "let-go"
