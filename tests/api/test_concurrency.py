"""Exactly one winner: of many requests presenting one valid token, one turn runs."""

import asyncio
from collections import Counter

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.tables import events
from tests.api.protocol import send, start

pytestmark = pytest.mark.pgbouncer  # the race, through PgBouncer too

ROUNDS = 20
RACERS = 50


async def committed_turns(engine: AsyncEngine, session_id: str) -> int:
    query = select(func.count()).where(
        events.c.session_id == session_id, events.c.kind == "committed"
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_fifty_racers_one_token_one_winner_for_twenty_rounds(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    for round_number in range(ROUNDS):
        replies = await asyncio.gather(
            *(send(client, session_id, token, f"round {round_number}") for _ in range(RACERS))
        )
        statuses = Counter(reply.status_code for reply in replies)
        assert statuses == {200: 1, 409: RACERS - 1}, (round_number, statuses)
        reasons = {reply.json()["reason"] for reply in replies if reply.status_code == 409}
        assert reasons <= {"in-flight", "stale-token"}, reasons
        (winner,) = [reply for reply in replies if reply.status_code == 200]
        token = winner.json()["continuationToken"]
        assert await committed_turns(engine, session_id) == round_number + 2  # + the start
