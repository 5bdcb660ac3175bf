"""Two replicas on one database, racing one token: exactly one turn runs. On PostgreSQL and
on SQLite, where two processes share one file under its write lock."""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.databases import POSTGRESQL, fresh_database
from tests.e2e.server import BatonServer
from tests.pgbouncer import PGBOUNCER, PgBouncer

pytestmark = [pytest.mark.e2e, pytest.mark.pgbouncer]  # the race, through PgBouncer too
ROUNDS = 20
RACERS = 30


@pytest.fixture
def database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, dict[str, str]]]:
    """The replicas' --database-url and the other settings they need."""
    with fresh_database(POSTGRESQL if backend == PGBOUNCER else backend, tmp_path) as url:
        if backend != PGBOUNCER:
            yield url, {}
            return
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        yield bouncer.url(url), bouncer.environ(url)


async def test_two_replicas_racing_one_token_let_exactly_one_turn_run(
    database: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, environ = database
    with (
        BatonServer(url, tmp_path / "a.log", environ=environ) as first,
        BatonServer(url, tmp_path / "b.log", environ=environ) as second,
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
            # Turn by turn from one replica to the other, each honours at once the token the
            # other just issued: neither decides on what it wrote itself before (SQLite's
            # writer keeps the rows it wrote only until another process commits).
            for turn in range(ROUNDS + 2, ROUNDS + 8):
                replica = (first, second)[turn % 2]
                reply = await client.post(
                    f"{replica.url}/v1/session/{session_id}/message",
                    json={"message": "next", "continuationToken": token},
                )
                assert reply.status_code == 200, (turn, reply.json())
                assert reply.json()["turn"] == turn
                token = reply.json()["continuationToken"]
