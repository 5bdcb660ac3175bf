"""SIGTERM under load: running turns finish, new ones get 503, nothing gets a wrong answer,
and the process exits 0 within its grace period."""

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from baton.domain.identifiers import digest_token
from baton.infra.tables import events, sessions
from tests.databases import fresh_database
from tests.e2e.server import TEST_HANDLER, BatonServer
from tests.e2e.store_probe import probe
from tests.waiting import until

pytestmark = pytest.mark.e2e
GRACE = 5.0
CLIENTS = 8


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


async def keep_turning(url: str, answers: list[tuple[int | str, str]], tokens: list[str]) -> None:
    """One client: a session, then slow turns until the server stops answering."""
    async with httpx.AsyncClient(base_url=url, timeout=GRACE * 3) as client:
        started = (await client.post("/v1/session", json={"message": "a"})).json()
        session_id, token = started["sessionId"], started["continuationToken"]
        while True:
            body = {"message": "/sleep", "seconds": 0.3, "continuationToken": token}
            try:
                reply = await client.post(f"/v1/session/{session_id}/message", json=body)
            except httpx.TransportError:
                answers.append(("gone", ""))  # the replica closed: retry elsewhere
                return
            payload = reply.json()
            answers.append((reply.status_code, payload.get("reason", payload.get("status", ""))))
            if reply.status_code != 200:
                return
            token = payload["continuationToken"]
            tokens.append(token)


async def test_sigterm_under_load_finishes_turns_and_exits_0(database: str, tmp_path: Path) -> None:
    server = BatonServer(
        database, tmp_path / "server.log", "--handler", TEST_HANDLER, "--shutdown-grace", str(GRACE)
    ).start()
    answers: list[tuple[int | str, str]] = []
    tokens: list[str] = []
    clients = [
        asyncio.create_task(keep_turning(server.url, answers, tokens)) for _ in range(CLIENTS)
    ]
    # Under way: every client has committed a turn (a deadline, not a guess at timing).
    await until(lambda: len(tokens) >= CLIENTS, "every client committed a turn")
    assert server.process is not None
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(server.process.wait, GRACE * 3)
    took = time.monotonic() - began
    await asyncio.gather(*clients)

    assert code == 0, server.log()
    assert took < GRACE + 2
    wrong = [
        answer
        for answer in answers
        if answer not in {(200, "finished"), (503, "unavailable"), ("gone", "")}
    ]
    assert wrong == []
    assert answers.count((200, "finished")) >= CLIENTS  # turns ran, and those running finished
    # Each client's last answer says the replica is going: 503 on a new turn, or a closed line.
    assert len(answers) - answers.count((200, "finished")) == CLIENTS

    async with probe(database) as engine, engine.connect() as conn:
        statuses = set((await conn.execute(select(sessions.c.status))).scalars())
        released = (
            await conn.execute(select(events.c.kind).where(events.c.kind == "released"))
        ).all()
        issued = set((await conn.execute(select(events.c.issued))).scalars())
    assert statuses == {"idle"}  # no turn was left in flight
    assert released == []  # every running turn finished within the grace period
    assert {digest_token(token) for token in tokens} <= issued  # every 200 is a commit


async def test_while_draining_new_turns_get_503_retry_after_and_readyz_is_503(
    database: str, tmp_path: Path
) -> None:
    """The gate closes at SIGTERM while the replica still answers: a load balancer polling
    /readyz sees it go, and a request already on its way is told to retry elsewhere."""
    server = BatonServer(
        database, tmp_path / "server.log", "--handler", TEST_HANDLER, "--shutdown-grace", "20"
    ).start()
    release = tmp_path / "let-go"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/readyz")).status_code == 200
        held = asyncio.create_task(
            client.post("/v1/session", json={"message": "/hold", "until": str(release)})
        )
        async with probe(database) as engine:

            async def in_flight() -> bool:
                async with engine.connect() as conn:
                    statuses = (await conn.execute(select(sessions.c.status))).scalars()
                    return "in-flight" in set(statuses)

            await until(in_flight, "the held turn is in flight")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)

        async def readyz_fails() -> bool:
            return (await client.get("/readyz")).status_code == 503

        await until(readyz_fails, "/readyz answers 503 after SIGTERM")
        readiness = (await client.get("/readyz")).json()
        refused = await client.post("/v1/session", json={"message": "too late"})
        assert (refused.status_code, refused.json()["reason"]) == (503, "unavailable")
        assert refused.headers["retry-after"] == "1"
        assert held.done() is False  # the held turn still runs...
        release.touch()
        finished = await held
    assert finished.status_code == 200, finished.text  # ...and finishes
    code = await asyncio.to_thread(server.process.wait, 30)
    assert code == 0, server.log()
    assert readiness["reason"] == "not-ready"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # uvicorn's part: any backend
async def test_sigterm_lets_a_held_429_go_and_exits_0(database: str, tmp_path: Path) -> None:
    """A blocked client's request held for its slot (api/refusal_limit.py) neither hangs
    nor is cut by a graceful shutdown: it is answered 429, and the process exits 0."""
    pace = {
        "BATON_REFUSAL_LIMIT": "1",
        "BATON_REFUSAL_WINDOW": "60",
        "BATON_REFUSAL_PACE": "0.5",  # slots 2 s apart: the next one, and none past it, fits
    }
    server = BatonServer(database, tmp_path / "server.log", environ=pace).start()
    junk = f"/v1/session/{uuid.uuid4()}/message"
    body = {"message": "junk", "continuationToken": "forged-token"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.post(junk, json=body)).status_code == 404  # the limit: blocked
        assert (await client.post(junk, json=body)).status_code == 429  # its slot: now
        # Two more, on two connections: one takes the slot 2 s ahead and is held, the other
        # would be 4 s ahead, past the max hold: answered at once, its connection closed.
        tasks = {asyncio.create_task(client.post(junk, json=body)) for _ in range(2)}
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        (at_once,) = done
        assert at_once.result().status_code == 429
        assert at_once.result().headers["connection"] == "close"
        (held,) = pending
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        answer = await held
    assert answer.status_code == 429
    assert answer.json()["reason"] == "too-many-refusals"
    code = await asyncio.to_thread(server.process.wait, 30)
    assert code == 0, server.log()
