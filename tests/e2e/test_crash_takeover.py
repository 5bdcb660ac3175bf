"""A replica that dies, or stalls, mid-turn: its lease lapses and the session carries on
elsewhere with the same token. Real processes, kill -9 and SIGSTOP, on both backends."""

import asyncio
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import digest_token
from baton.infra.tables import sessions
from tests.databases import fresh_database
from tests.e2e.server import TEST_HANDLER, BatonServer
from tests.e2e.store_probe import probe, session_events, wait_for_status

pytestmark = pytest.mark.e2e
LEASE = "1"  # seconds; short, so the takeover is quick to see


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


def replica(database: str, tmp_path: Path, name: str, lease: str = LEASE) -> BatonServer:
    log = tmp_path / f"{name}.log"
    return BatonServer(database, log, "--handler", TEST_HANDLER, "--lease", lease)


async def send(
    client: httpx.AsyncClient,
    server: BatonServer,
    session_id: str,
    token: str,
    body: dict[str, object],
) -> httpx.Response:
    return await client.post(
        f"{server.url}/v1/session/{session_id}/message",
        json={**body, "continuationToken": token},
        timeout=30,
    )


async def wait_until_lapsed(engine: AsyncEngine, session_id: str) -> None:
    query = select(sessions.c.lease_until).where(sessions.c.session_id == session_id)
    async with engine.connect() as conn:
        until = (await conn.execute(query)).scalar_one()
    await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.2)


async def freeze_between_writes(process: subprocess.Popen[bytes], database: str) -> None:
    """SIGSTOP a replica at a moment it holds no SQLite write lock.

    A process frozen inside a write transaction (its heartbeat renewing the lease, say) holds
    SQLite's one write lock, and every other replica's write waits out its busy timeout and
    answers 503: loud and retryable, but a different scenario from the stalled *handler* this
    test is about. PostgreSQL's single-statement writes hold nothing across a freeze."""
    path = make_url(database).database
    for _ in range(200):
        os.kill(process.pid, signal.SIGSTOP)
        if path is None or not database.startswith("sqlite"):
            return
        try:
            with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # frozen mid-write: let it finish, try again
            os.kill(process.pid, signal.SIGCONT)
            await asyncio.sleep(0.005)
    raise AssertionError("the replica never paused between writes")


def lifecycle(stored: list[dict[str, object]], turn: int) -> list[object]:
    """The kinds of a turn's events that decide who held it: claims, expiries, the commit."""
    kinds = {"claimed", "expired", "committed"}
    return [event["kind"] for event in stored if event["turn"] == turn and event["kind"] in kinds]


async def test_kill_9_mid_turn_then_the_same_token_claims_again(
    database: str, tmp_path: Path
) -> None:
    # A lease long enough that the survivor is up before it lapses, whatever the machine.
    doomed = replica(database, tmp_path, "doomed", lease="5").start()
    async with httpx.AsyncClient() as client, probe(database) as engine:
        started = (await client.post(f"{doomed.url}/v1/session", json={"message": "a"})).json()
        session_id, token = started["sessionId"], started["continuationToken"]
        sleeping = asyncio.create_task(
            send(client, doomed, session_id, token, {"message": "/sleep", "seconds": 60})
        )
        await wait_for_status(engine, session_id, "in-flight")
        doomed.kill()
        with pytest.raises(httpx.TransportError):
            await sleeping

        with replica(database, tmp_path, "survivor") as survivor:
            early = await send(client, survivor, session_id, token, {"message": "too soon"})
            assert (early.status_code, early.json()["reason"]) == (409, "in-flight")
            await wait_until_lapsed(engine, session_id)
            resumed = await send(client, survivor, session_id, token, {"message": "again"})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["turn"] == 2
        stored = await session_events(engine, session_id)
    assert lifecycle(stored, 2) == ["claimed", "expired", "claimed", "committed"]


async def test_a_stalled_turn_whose_lease_lapsed_ends_contended(
    database: str, tmp_path: Path
) -> None:
    with (
        replica(database, tmp_path, "stalled") as stalled,
        replica(database, tmp_path, "other") as other,
    ):
        async with httpx.AsyncClient() as client, probe(database) as engine:
            started = (await client.post(f"{stalled.url}/v1/session", json={"message": "a"})).json()
            session_id, token = started["sessionId"], started["continuationToken"]
            slow = asyncio.create_task(
                send(client, stalled, session_id, token, {"message": "/sleep", "seconds": 1.5})
            )
            await wait_for_status(engine, session_id, "in-flight")
            assert stalled.process is not None
            await freeze_between_writes(stalled.process, database)  # no heartbeat: it lapses
            try:
                await wait_until_lapsed(engine, session_id)
                taken = await send(client, other, session_id, token, {"message": "takeover"})
            finally:
                os.kill(stalled.process.pid, signal.SIGCONT)
            late = await slow
            stored = await session_events(engine, session_id)

    assert taken.status_code == 200, taken.text
    assert taken.json()["status"] == "finished"
    assert late.status_code == 200, late.text
    assert late.json()["status"] == "contended"
    assert "continuationToken" not in late.json()
    final_version = max(int(str(event["seq"])) for event in stored if event["seq"] is not None)
    assert late.json()["current"] == final_version  # the version it lost to
    committed = [event for event in stored if event["kind"] == "committed"]
    assert [event["turn"] for event in committed] == [1, 2]  # the stalled turn never committed
    assert [event["consumed"] for event in committed].count(digest_token(token)) == 1
    assert lifecycle(stored, 2) == ["claimed", "expired", "claimed", "committed"]


async def test_a_stream_following_a_dead_replicas_turn_ends_once_its_lease_lapses(
    database: str, tmp_path: Path
) -> None:
    """A client that lost its stream when the replica died resumes it elsewhere: the stream
    must end (error unavailable, the token still current), not wait forever for an outcome
    no one will write."""
    doomed = replica(database, tmp_path, "doomed", lease="3").start()
    async with httpx.AsyncClient() as client, probe(database) as engine:
        started = (await client.post(f"{doomed.url}/v1/session", json={"message": "a"})).json()
        session_id, token = started["sessionId"], started["continuationToken"]
        sleeping = asyncio.create_task(
            send(client, doomed, session_id, token, {"message": "/sleep", "seconds": 60})
        )
        await wait_for_status(engine, session_id, "in-flight")
        doomed.kill()
        with pytest.raises(httpx.TransportError):
            await sleeping

        with replica(database, tmp_path, "survivor") as survivor:
            events = f"{survivor.url}/v1/session/{session_id}/events"
            headers = {"Accept": "text/event-stream", "X-Continuation-Token": token}
            # A guard, not a measurement: pings would keep a stream that never ends open.
            async with (
                asyncio.timeout(30),
                client.stream("GET", events, headers=headers, timeout=30) as stream,
            ):
                assert stream.status_code == 200
                body = (await stream.aread()).decode()
            # The stream ended by itself: the last message is the unstored error.
            last = [block for block in body.split("\r\n\r\n") if "data:" in block][-1]
            assert "id:" not in last
            assert "event: error" in last, last
            assert '"reason":"unavailable"' in last, last
            assert '"turn":2' in last
            resumed = await send(client, survivor, session_id, token, {"message": "again"})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["turn"] == 2
