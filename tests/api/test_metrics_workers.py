"""With PROMETHEUS_MULTIPROC_DIR set, as `baton serve --workers N` sets it for its workers,
a scrape of any one process counts what every process sharing the directory did."""

from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.metrics import MULTIPROCESS_DIR
from tests.conformance.clients import BufferedClient
from tests.e2e.server import BatonServer
from tests.scrape import samples

FINISHED_REST = frozenset({("status", "finished"), ("transport", "rest")})


async def run_turns(url: str, count: int) -> None:
    client = BufferedClient(url)
    answer = await client.start({"message": "hello"})
    for number in range(count - 1):
        answer = await client.send(answer.session_id, answer.token, {"message": str(number)})
        assert answer.kind == "outcome"


async def test_a_scrape_of_one_worker_counts_every_worker(
    database_url: str, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    monkeypatch.setenv(MULTIPROCESS_DIR, str(shared))  # for the servers this test starts
    with (
        BatonServer(database_url, tmp_path / "one.log") as one,
        BatonServer(database_url, tmp_path / "two.log") as two,
    ):
        await run_turns(one.url, 2)
        await run_turns(two.url, 3)
        async with httpx.AsyncClient() as client:
            bad = await client.post(f"{two.url}/v1/session", content=b"not json")
            assert bad.status_code == 400
            scraped = {
                server: samples((await client.get(f"{server.url}/metrics")).text)
                for server in (one, two)
            }
    for seen in scraped.values():
        assert seen["baton_turns_total", FINISHED_REST] == 5
        assert seen["baton_errors_total", frozenset({("reason", "bad-request")})] == 1
        assert seen["baton_turn_duration_seconds_count", frozenset({("transport", "rest")})] == 5
        assert seen["baton_turns_in_flight", frozenset()] == 0
    assert len(list(shared.glob("counter_*.db"))) == 2  # one file per process
