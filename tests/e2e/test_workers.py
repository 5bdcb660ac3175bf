"""`baton serve --workers 2` on PostgreSQL, as real processes: sessions continue from one
worker to the other, a worker killed with -9 is replaced and its turn taken over after its
lease, and SIGTERM to the supervisor drains both workers. Which worker ran a turn is read
from the store: each worker claims under an owner id of its own, host:pid:random."""

import asyncio
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.tables import events, sessions
from tests.databases import fresh_database
from tests.e2e.server import STARTUP_SECONDS, TEST_HANDLER, BatonServer
from tests.e2e.store_probe import probe, session_events, wait_for_status
from tests.waiting import until

pytestmark = pytest.mark.e2e
LEASE = "2"
GRACE = 10.0


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


class TwoWorkers(BatonServer):
    def _wait_until_healthy(self) -> None:
        """Until both workers serve: the socket answers as soon as one does."""
        super()._wait_until_healthy()
        deadline = time.monotonic() + STARTUP_SECONDS
        while "baton: 2 workers ready" not in self.log():
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)


def two_workers(database: str, tmp_path: Path) -> BatonServer:
    return TwoWorkers(
        database,
        tmp_path / "server.log",
        *("--workers", "2", "--handler", TEST_HANDLER, "--lease", LEASE),
        *("--shutdown-grace", str(GRACE)),
    )


def workers_of(server: BatonServer) -> set[int]:
    """The supervisor's worker processes (multiprocessing's spawned children; not its
    resource tracker), read from /proc."""
    assert server.process is not None
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == server.process.pid and b"spawn_main" in command:
            found.add(int(stat.parent.name))
    return found


def metrics_dir_of(pid: int) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR a worker was started with."""
    variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    (found,) = [v for v in variables if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(found.split(b"=", 1)[1].decode())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped; its new parent has yet to reap it


def pid_of(owner: str) -> int:
    return int(owner.split(":")[1])  # api/app.py: host:pid:random


def fresh_connections() -> httpx.AsyncClient:
    """A new connection per request, so the workers' accepts share out the requests."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=30, limits=limits)


async def owners_by_session(engine: AsyncEngine) -> dict[str, list[str]]:
    """Who started or claimed each turn of each session, in order."""
    query = (
        select(events.c.session_id, events.c.data)
        .where(events.c.kind.in_(("started", "claimed")))
        .order_by(events.c.position)
    )
    owners: dict[str, list[str]] = defaultdict(list)
    async with engine.connect() as conn:
        for session_id, data in await conn.execute(query):
            owners[str(session_id)].append(data["owner"])
    return owners


async def converse(client: httpx.AsyncClient, url: str, turns: int) -> None:
    reply = await client.post(f"{url}/v1/session", json={"message": "hello"})
    assert reply.status_code == 200, reply.text
    for _ in range(turns):
        session_id, token = reply.json()["sessionId"], reply.json()["continuationToken"]
        body = {"message": "again", "continuationToken": token}
        reply = await client.post(f"{url}/v1/session/{session_id}/message", json=body)
        assert reply.status_code == 200, reply.text


async def test_sessions_continue_across_both_workers(database: str, tmp_path: Path) -> None:
    with two_workers(database, tmp_path) as server:
        pids = workers_of(server)
        async with fresh_connections() as client:
            await asyncio.gather(*(converse(client, server.url, 3) for _ in range(10)))
        async with probe(database) as engine:
            owners = await owners_by_session(engine)
    assert len(pids) == 2
    assert len(owners) == 10
    assert all(len(turns) == 4 for turns in owners.values())
    every_owner = {owner for turns in owners.values() for owner in turns}
    assert {pid_of(owner) for owner in every_owner} == pids  # one lease owner per worker...
    assert len(every_owner) == 2
    # ...and sessions that one worker started and the other continued.
    assert any(len(set(turns)) == 2 for turns in owners.values()), owners


async def test_a_worker_killed_mid_turn_is_replaced_and_its_turn_taken_over(
    database: str, tmp_path: Path
) -> None:
    with two_workers(database, tmp_path) as server:
        before = workers_of(server)
        async with fresh_connections() as client, probe(database) as engine:
            started = (await client.post(f"{server.url}/v1/session", json={"message": "a"})).json()
            session_id, token = started["sessionId"], started["continuationToken"]
            body = {"message": "/sleep", "seconds": 60, "continuationToken": token}
            sleeping = asyncio.create_task(
                client.post(f"{server.url}/v1/session/{session_id}/message", json=body)
            )
            await wait_for_status(engine, session_id, "in-flight")
            async with engine.connect() as conn:
                query = select(sessions.c.claim_owner).where(sessions.c.session_id == session_id)
                doomed = pid_of((await conn.execute(query)).scalar_one())
            os.kill(doomed, signal.SIGKILL)  # a worker of our own server, by its pid
            with pytest.raises(httpx.TransportError):
                await sleeping

            # The other worker serves on; uvicorn's supervisor starts a replacement.
            await converse(client, server.url, 1)
            await until(lambda: len(workers_of(server) - {doomed}) == 2, "a replacement runs")
            # After the dead worker's lease, the same token claims the turn again.
            retry = {"message": "again", "continuationToken": token}
            path = f"{server.url}/v1/session/{session_id}/message"

            async def taken_over() -> bool:
                reply = await client.post(path, json=retry)
                assert reply.status_code in {200, 409}, reply.text
                return reply.status_code == 200

            await until(taken_over, "the dead worker's turn is taken over", seconds=15)
            stored = await session_events(engine, session_id)
        # The supervisor itself killed: its workers do not serve on as orphans.
        survivors = workers_of(server)
        server.kill()
        await until(lambda: not any(alive(pid) for pid in survivors), "the orphans stop")
    assert doomed in before
    kinds = [event["kind"] for event in stored if event["turn"] == 2]
    assert [kind for kind in kinds if kind in {"claimed", "expired", "committed"}] == [
        "claimed",
        "expired",
        "claimed",
        "committed",
    ]


async def test_sigterm_drains_both_workers(database: str, tmp_path: Path) -> None:
    """Turns held on both workers; SIGTERM to the supervisor: new turns get 503 with
    Retry-After and /readyz 503 while they run, the held turns finish, the supervisor exits
    0 and removes the metrics directory it gave the workers."""
    server = two_workers(database, tmp_path).start()
    metrics_dirs = {metrics_dir_of(pid) for pid in workers_of(server)}
    assert len(metrics_dirs) == 1
    assert all(path.is_dir() for path in metrics_dirs)
    release = tmp_path / "let-go"
    hold = {"message": "/hold", "until": str(release)}
    async with fresh_connections() as client, probe(database) as engine:
        held = []

        async def holders() -> set[str]:
            async with engine.connect() as conn:
                query = select(sessions.c.claim_owner).where(sessions.c.status == "in-flight")
                return set((await conn.execute(query)).scalars())

        while len(await holders()) < 2:  # until each worker holds a turn
            assert len(held) < 40, "the turns never reached both workers"
            held.append(asyncio.create_task(client.post(f"{server.url}/v1/session", json=hold)))
            await asyncio.sleep(0.1)
        assert server.process is not None
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        async def refused() -> bool:
            reply = await client.post(f"{server.url}/v1/session", json={"message": "late"})
            return reply.status_code == 503

        await until(refused, "new turns are refused")
        late = [
            await client.post(f"{server.url}/v1/session", json={"message": "x"}) for _ in range(8)
        ]
        readyz = await client.get(f"{server.url}/readyz")
        assert not any(task.done() for task in held)  # still running on both workers
        release.touch()
        finished = await asyncio.gather(*held)
        code = await asyncio.to_thread(server.process.wait, GRACE * 2)
        async with engine.connect() as conn:
            statuses = set((await conn.execute(select(sessions.c.status))).scalars())
            released = (await conn.execute(select(events).where(events.c.kind == "released"))).all()
    assert code == 0, server.log()
    assert time.monotonic() - began < GRACE
    assert {(reply.status_code, reply.headers.get("retry-after")) for reply in late} == {(503, "1")}
    assert readyz.status_code == 503
    assert {reply.status_code for reply in finished} == {200}
    assert statuses == {"idle"}
    assert released == []
    assert not any(path.exists() for path in metrics_dirs)
