"""Two replicas on one database, racing one token: exactly one turn runs. On PostgreSQL and
on SQLite, where two processes share one file under its write lock."""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import fresh_database
from tests.e2e.server import BatonServer

pytestmark = pytest.mark.e2e
ROUNDS = 20
RACERS = 30


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


async def test_two_replicas_racing_one_token_let_exactly_one_turn_run(
    database: str, tmp_path: Path
) -> None:
    with (
        BatonServer(database, tmp_path / "a.log") as first,
        BatonServer(database, tmp_path / "b.log") as second,
    ):
        async with httpx.AsyncClient(timeout=30) as client:
            started = (await client.post(f"{first.url}/v1/session", json={"message": "a"})).json()
            session_id, token = started["sessionId"], started["continuationToken"]
            for round_number in range(ROUNDS):
                replies = await asyncio.gather(
                    *(
                        client.post(
                            f"{(first, second)[racer % 2].url}/v1/session/{session_id}/message",
                            json={"message": f"r{round_number}", "continuationToken": token},
                        )
                        for racer in range(RACERS)
                    )
                )
                statuses = Counter(reply.status_code for reply in replies)
                assert statuses == {200: 1, 409: RACERS - 1}, (round_number, statuses)
                reasons = {reply.json()["reason"] for reply in replies if reply.status_code == 409}
                assert reasons <= {"in-flight", "stale-token"}
                (winner,) = [reply for reply in replies if reply.status_code == 200]
                assert winner.json()["turn"] == round_number + 2
                token = winner.json()["continuationToken"]
