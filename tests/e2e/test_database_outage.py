"""PostgreSQL goes away under load and comes back: requests in the window get 503 (never a
wrong protocol answer), none after, the replica recovers by itself, and every commit a
client was told about is in the store."""

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import select

from baton.domain.identifiers import digest_token
from baton.infra.tables import events
from tests.databases import POSTGRES_ADMIN_URL, fresh_database
from tests.e2e.server import BatonServer
from tests.e2e.store_probe import probe
from tests.waiting import until

pytestmark = pytest.mark.e2e
CLIENTS = 6
SETTLE = 1.0  # after the database is back, within which a last 503 is still fair


@dataclass
class Log:
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (when, status, reason)
    acknowledged: list[str] = field(default_factory=list)  # tokens received in a 200
    recovered: int = 0


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def recovered(http: httpx.AsyncClient, session_id: str, consumed: str) -> str | None:
    """The token a commit issued after consuming `consumed`, if it landed, read through the
    API with the consumed token (PROTOCOL section 6.2)."""
    read = await http.get(f"/v1/session/{session_id}", headers={"X-Continuation-Token": consumed})
    if read.status_code != 200:
        return None
    outcome = read.json().get("lastOutcome") or {}
    return outcome.get("continuationToken") if outcome.get("recovered") else None


async def client(url: str, stop: asyncio.Event, log: Log) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        started = (await http.post("/v1/session", json={"message": "a"})).json()
        session_id, token = started["sessionId"], started["continuationToken"]
        while not stop.is_set():
            body = {"message": "m", "continuationToken": token}
            reply = await http.post(f"/v1/session/{session_id}/message", json=body)
            payload = reply.json()
            log.answers.append((time.monotonic(), reply.status_code, payload.get("reason", "")))
            if reply.status_code == 200:
                token = payload["continuationToken"]
                log.acknowledged.append(token)
            elif payload.get("reason") == "stale-token":
                # A 503 whose commit had landed: recover the token it issued, as a client can.
                issued = await recovered(http, session_id, token)
                assert issued is not None, "stale-token for a token that was never consumed"
                token, log.recovered = issued, log.recovered + 1
            else:
                await asyncio.sleep(0.05)  # 503, or in-flight behind a claim that lost its line


def answered(log: Log, status: int, since: float) -> int:
    return sum(1 for when, code, _ in log.answers if code == status and when >= since)


async def test_a_database_outage_under_load_is_503_then_recovers(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as database:
        name = database.rsplit("/", 1)[1]
        with BatonServer(database, tmp_path / "server.log", "--lease", "1") as server:
            log, stop = Log(), asyncio.Event()
            clients = [asyncio.create_task(client(server.url, stop, log)) for _ in range(CLIENTS)]
            await until(lambda: len(log.acknowledged) >= CLIENTS, "the clients are under way")
            down = time.monotonic()
            await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            await until(lambda: answered(log, 503, since=down) >= CLIENTS, "clients see 503s")
            await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            up = time.monotonic()
            await until(
                lambda: answered(log, 200, since=up + SETTLE) >= 2 * CLIENTS,
                "turns commit again after the database is back",
            )
            stop.set()
            await asyncio.gather(*clients)

        async with probe(database) as engine, engine.connect() as conn:
            issued = set((await conn.execute(select(events.c.issued))).scalars())

    kinds = {(status, reason) for _, status, reason in log.answers}
    allowed = {(200, ""), (503, "unavailable"), (409, "in-flight"), (409, "stale-token")}
    assert kinds <= allowed, kinds - allowed
    during = [status for when, status, _ in log.answers if down <= when <= up]
    after = [status for when, status, _ in log.answers if when > up + SETTLE]
    assert 503 in during  # the outage was seen...
    assert after  # ...the clients went on...
    assert 503 not in after  # ...and the replica recovered by itself
    assert after.count(200) > 0
    missing = [token for token in log.acknowledged if digest_token(token) not in issued]
    assert missing == []  # no acknowledged commit is lost
