"""One real `baton serve` per backend for the client's tests (the restart test makes its own),
and what a test reads back from that server's database."""

from collections.abc import Iterator

import pytest

from tests.databases import fresh_database
from tests.e2e.server import BatonServer
from tests.e2e.store_probe import probe, session_events

CLIENT_HANDLER = "tests.client.handlers:client_handler"


@pytest.fixture(scope="package")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatonServer]:
    directory = tmp_path_factory.mktemp(f"client-{backend}")
    with (
        fresh_database(backend, directory) as url,
        BatonServer(url, directory / "server.log", "--handler", CLIENT_HANDLER) as running,
    ):
        yield running


async def committed_turns(database_url: str, session_id: str) -> list[int]:
    """The turn of every `committed` event the store holds for the session, in order."""
    async with probe(database_url) as engine:
        rows = await session_events(engine, session_id)
    return [row["turn"] for row in rows if row["kind"] == "committed"]
