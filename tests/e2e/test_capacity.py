"""Bounds a process keeps whatever its clients do (issue 13): a stream that falls too far
behind its turn is dropped while the turn commits, and a process runs at most --max-turns
turns at once, refusing more with 503 before anything is claimed. Real servers, both
backends."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from baton.infra.tables import events
from tests.databases import fresh_database
from tests.e2e.server import TEST_HANDLER, BatonServer
from tests.e2e.store_probe import probe
from tests.waiting import until

pytestmark = pytest.mark.e2e


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


async def test_a_reader_that_falls_behind_is_dropped_and_the_turn_commits(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client opens a stream of 4 MB of deltas and reads none of it until the turn has
    committed: the socket's buffers fill, the turn's queue passes its bound, and the stream
    is dropped rather than held in memory; what the client then reads ends with the error
    that says so, and the session moved on."""
    monkeypatch.setenv("BATON_STREAM_BUFFER", "50")
    with BatonServer(database, tmp_path / "server.log", "--handler", TEST_HANDLER) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            started = (await client.post("/v1/session", json={"message": "a"})).json()
            session_id, token = started["sessionId"], started["continuationToken"]
            flood = {"message": "/flood", "deltas": 4000, "size": 1000, "continuationToken": token}
            async with client.stream(
                "POST",
                f"/v1/session/{session_id}/message",
                json=flood,
                headers={"Accept": "text/event-stream"},
            ) as stream:
                assert stream.status_code == 200

                async def committed() -> bool:
                    read = await client.get(
                        f"/v1/session/{session_id}", headers={"X-Continuation-Token": token}
                    )
                    return read.json()["turn"] == 2

                await until(committed, "the flooding turn committed")
                body = (await stream.aread()).decode()
    messages = [block for block in body.split("\r\n\r\n") if "data: " in block]
    last = json.loads(messages[-1].split("data: ", 1)[1])
    assert (last["type"], last["reason"]) == ("error", "unavailable"), last
    assert "fell too far behind" in last["message"]
    assert sum('"type":"delta"' in block for block in messages) < 4000  # not all kept


async def test_beyond_max_turns_a_turn_is_503_before_anything_is_claimed(
    database: str, tmp_path: Path
) -> None:
    flags = ("--handler", TEST_HANDLER, "--max-turns", "2")
    with BatonServer(database, tmp_path / "server.log", *flags) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=60) as client,
            probe(database) as engine,
        ):
            starts = [
                (await client.post("/v1/session", json={"message": "a"})).json() for _ in range(3)
            ]
            flag = tmp_path / "let-go"
            held = [
                asyncio.create_task(
                    client.post(
                        f"/v1/session/{s['sessionId']}/message",
                        json={
                            "message": "/hold",
                            "until": str(flag),
                            "continuationToken": s["continuationToken"],
                        },
                    )
                )
                for s in starts[:2]
            ]

            async def both_held() -> bool:
                async with engine.connect() as conn:
                    query = (
                        select(func.count()).select_from(events).where(events.c.kind == "record")
                    )
                    return int((await conn.execute(query)).scalar_one()) >= 3 + 2

            await until(both_held, "two turns are held")
            async with engine.connect() as conn:
                stored = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
            third = starts[2]
            refused = await client.post(
                f"/v1/session/{third['sessionId']}/message",
                json={"message": "b", "continuationToken": third["continuationToken"]},
            )
            fresh = await client.post("/v1/session", json={"message": "new"})
            for answer in (refused, fresh):
                assert answer.status_code == 503, answer.text
                assert answer.json()["reason"] == "unavailable"
                assert "maximum of 2 turns" in answer.json()["error"]
                assert answer.headers["Retry-After"] == "1"
            async with engine.connect() as conn:
                after = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
            assert after == stored  # nothing claimed, nothing recorded
            flag.touch()
            assert [(await task).status_code for task in held] == [200, 200]
            # The refused token is still current: the same turn runs now.
            again = await client.post(
                f"/v1/session/{third['sessionId']}/message",
                json={"message": "b", "continuationToken": third["continuationToken"]},
            )
            assert again.status_code == 200, again.text
