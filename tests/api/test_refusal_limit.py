"""The per-client refusal limit (api/refusal_limit.py): a flood of junk from one client stops
being stored at the limit and is answered 429, other clients and the session's owner are
untouched, the count is shared by replicas, and the window ends."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.api.errors import TOO_MANY_REFUSALS, error_body
from baton.api.refusal_limit import CLIENT, RefusalLimiter
from baton.infra.settings import Settings
from baton.infra.tables import events
from tests.api.conftest import in_process_client, running
from tests.api.identified import Identified
from tests.waiting import until

ALICE_KEY = "alice-key-0123456789abcdef0123456789"
MALLORY_KEY = "mallory-key-0123456789abcdef01234567"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
MALLORY = {"Authorization": f"Bearer {MALLORY_KEY}"}
LIMIT = 3


@pytest.fixture
def mallory() -> str:
    """Mallory's principal name, new in every test: the budgets live in the shared database
    and outlast a test."""
    return f"mallory-{uuid.uuid4().hex[:12]}"


def limited(settings: Settings, mallory: str, window: float = 60.0) -> Settings:
    return replace(
        settings,
        refusal_limit=LIMIT,
        refusal_window=window,
        api_keys=(("alice", ALICE_KEY), (mallory, MALLORY_KEY)),
    )


@asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with running(app), in_process_client(app) as client:
        yield client


async def refusals_by(engine: AsyncEngine, name: str) -> int:
    query = select(events.c.data).where(events.c.kind == "refused")
    async with engine.connect() as conn:
        stored = (await conn.execute(query)).scalars()
        return sum(1 for data in stored if data.get("principal") == f"key:{name}")


async def start(client: AsyncClient) -> tuple[str, str]:
    response = await client.post("/v1/session", json={"message": "hi"}, headers=ALICE)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["sessionId"], body["continuationToken"]


async def junk(client: AsyncClient, session_id: str) -> int:
    response = await client.post(
        f"/v1/session/{session_id}/message",
        json={"message": "junk", "continuationToken": "forged-token"},
        headers=MALLORY,
    )
    if response.status_code == 429:
        assert response.json()["reason"] == "too-many-refusals"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    return response.status_code


async def test_a_flood_stops_being_stored_at_the_limit_and_the_owner_carries_on(
    settings: Settings, engine: AsyncEngine, mallory: str
) -> None:
    async with replica(limited(settings, mallory)) as client:
        session_id, token = await start(client)
        statuses = [await junk(client, session_id) for _ in range(10)]
        # Mallory names a session that is not hers: unknown-session, stored, counted.
        assert statuses == [404] * LIMIT + [429] * (10 - LIMIT)
        assert await refusals_by(engine, mallory) == LIMIT
        turn = await client.post(
            f"/v1/session/{session_id}/message",
            json={"message": "mine", "continuationToken": token},
            headers=ALICE,
        )
        assert turn.status_code == 200, turn.text
        metrics = (await client.get("/metrics")).text
        assert 'baton_errors_total{reason="too-many-refusals"} 7' in metrics  # a new app


async def test_the_fast_429_and_the_exception_handlers_send_one_body_shape(
    settings: Settings, mallory: str
) -> None:
    """The middleware's 429 and every error the exception handlers answer (the junk's 404,
    the in-band 429 TurnApi raises) are the same bytes for the same reason and message:
    api/errors.error_body makes them all."""
    async with replica(limited(settings, mallory)) as client:
        session_id, _ = await start(client)
        answers = []
        for _ in range(LIMIT + 1):
            answers.append(
                await client.post(
                    f"/v1/session/{session_id}/message",
                    json={"message": "junk", "continuationToken": "forged-token"},
                    headers=MALLORY,
                )
            )
        for answer in answers:
            decoded = answer.json()
            assert answer.content == error_body(decoded["reason"], decoded["error"])
        assert answers[-1].status_code == 429
        assert answers[-1].json()["reason"] == TOO_MANY_REFUSALS


async def test_concurrent_junk_stores_at_most_the_limit_and_what_was_in_flight(
    settings: Settings, engine: AsyncEngine, mallory: str
) -> None:
    async with replica(limited(settings, mallory)) as client:
        session_id, _ = await start(client)
        burst = 40
        statuses = await asyncio.gather(*(junk(client, session_id) for _ in range(burst)))
        # What had passed the check before the limit was reached is stored (all of a burst
        # that arrives at once, at worst); nothing after it.
        assert await refusals_by(engine, mallory) == statuses.count(404) >= LIMIT
        assert {await junk(client, session_id) for _ in range(5)} == {429}
        assert await refusals_by(engine, mallory) == statuses.count(404)


async def test_replicas_share_the_count(
    settings: Settings, engine: AsyncEngine, mallory: str
) -> None:
    config = limited(settings, mallory)
    async with replica(config) as first, replica(config) as second:
        session_id, _ = await start(first)
        assert [await junk(first, session_id) for _ in range(LIMIT + 1)][-1] == 429
        # The other replica stores one more (it learns of the block from the shared count),
        # then refuses too.
        assert [await junk(second, session_id) for _ in range(3)] == [404, 429, 429]
        assert await refusals_by(engine, mallory) == LIMIT + 1


async def test_the_block_ends_with_the_window(settings: Settings, mallory: str) -> None:
    async with replica(limited(settings, mallory, window=1.0)) as client:
        session_id, _ = await start(client)
        assert [await junk(client, session_id) for _ in range(LIMIT + 1)][-1] == 429

        async def refused_again() -> bool:
            return await junk(client, session_id) == 404

        await until(refused_again, "the window ended", seconds=10)


async def test_without_a_limit_nothing_is_counted(settings: Settings, mallory: str) -> None:
    keyed = replace(settings, api_keys=(("alice", ALICE_KEY), (mallory, MALLORY_KEY)))
    async with replica(keyed) as client:
        session_id, _ = await start(client)
        assert {await junk(client, session_id) for _ in range(LIMIT + 3)} == {404}


async def test_a_blocked_client_is_answered_before_the_app_is_reached() -> None:
    """The flood's 429 costs no routing, parsing or handler: the middleware answers it."""
    now = datetime(2026, 1, 1, tzinfo=UTC)

    async def spend(client: str, at: datetime, until: datetime) -> tuple[int, datetime]:
        return 1, now + timedelta(seconds=2.5)

    limiter = RefusalLimiter(spend, 1, 5.0, lambda: now, pace=100.0)
    token = CLIENT.set("address:10.0.0.9")
    await limiter.spent()  # the limit reached: blocked for what is left of the window
    CLIENT.reset(token)

    async def unreachable(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app was reached")

    identified = Identified(limiter, unreachable)
    await identified.request("10.0.0.9")
    start, body = identified.sent
    assert start["status"] == 429
    assert dict(start["headers"])[b"retry-after"] == b"3"
    assert json.loads(body["body"]) == {
        "error": "too many refused requests from this client; retry in 3 s",
        "reason": "too-many-refusals",
    }
    # The very bytes api/errors.py sends for any error: one helper makes both.
    message = "too many refused requests from this client; retry in 3 s"
    assert body["body"] == error_body(TOO_MANY_REFUSALS, message)
    with pytest.raises(AssertionError, match="the app was reached"):  # another client
        await identified.request("10.0.0.8")
