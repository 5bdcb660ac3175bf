"""The conformance suite runs every case over each transport, on each backend, against a
real server process that shares the run's database: `baton serve`, and a user's own app
with Baton mounted by its plugin (tests/plugin_app.py)."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conformance.clients import TRANSPORTS, TurnClient
from tests.e2e.server import BATON, TEST_HANDLER, BatonServer

# `baton serve`, and a user's own app with Baton mounted by BatonPlugin: the same protocol.
APPS = {
    "serve": (str(BATON), "serve"),
    "plugin": (sys.executable, "-m", "tests.plugin_app"),
}


@pytest.fixture(scope="session", params=sorted(APPS))
def server(
    request: pytest.FixtureRequest,
    database_url: str,
    engine: AsyncEngine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BatonServer]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    program = APPS[request.param]
    with BatonServer(database_url, log, "--handler", TEST_HANDLER, program=program) as running:
        yield running


@pytest.fixture(params=sorted(TRANSPORTS))
def turns(request: pytest.FixtureRequest, server: BatonServer) -> TurnClient:
    client: TurnClient = TRANSPORTS[request.param](server.url)
    return client


@pytest.fixture
def release_file(tmp_path: Path) -> Path:
    """A held turn (tests.handlers) runs on once this file exists."""
    return tmp_path / "let-go"
