"""Every row of PROTOCOL section 3 over HTTP: exact status, reason and message, stored as a
`refused` event, and never moving the session's version."""

import asyncio
import uuid

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.tables import events, side_chains
from tests.api.conftest import HeldTurns
from tests.api.protocol import event_kinds, refusal_of, send, session_row, start

STALE = (409, "stale-token", "stale or invalid continuationToken")
UNEXPECTED = (400, "unexpected-token", "present no continuationToken to start a session")


async def refused_reasons(engine: AsyncEngine, session_id: str) -> list[str]:
    query = select(events.c.data).where(
        events.c.session_id == session_id, events.c.kind == "refused"
    )
    async with engine.connect() as conn:
        return [
            data["reason"]
            for data in (await conn.execute(query.order_by(events.c.position))).scalars()
        ]


async def test_unknown_session(client: AsyncClient) -> None:
    ghost = str(uuid.uuid4())
    response = await send(client, ghost, "whatever")
    assert refusal_of(response) == (404, "unknown-session", f"unknown session '{ghost}'")


async def test_malformed_session_id_is_an_unknown_session(client: AsyncClient) -> None:
    response = await send(client, "not-a-session", "whatever")
    assert refusal_of(response) == (404, "unknown-session", "unknown session 'not-a-session'")


async def test_missing_token(client: AsyncClient, engine: AsyncEngine) -> None:
    session = await start(client)
    response = await send(client, session["sessionId"], None)
    assert refusal_of(response) == (400, "missing-token", "missing continuationToken")
    assert await refused_reasons(engine, session["sessionId"]) == ["missing-token"]


async def test_a_consumed_token_is_stale(client: AsyncClient) -> None:
    session = await start(client)
    assert (
        await send(client, session["sessionId"], session["continuationToken"])
    ).status_code == 200
    response = await send(client, session["sessionId"], session["continuationToken"])
    assert refusal_of(response) == STALE


async def test_forged_and_malformed_tokens_are_stale(client: AsyncClient) -> None:
    session = await start(client)
    for forged in ("A" * 43, "x", "not a token at all", "é" * 10):
        assert refusal_of(await send(client, session["sessionId"], forged)) == STALE


async def test_another_sessions_token_is_stale(client: AsyncClient) -> None:
    mine, theirs = await start(client), await start(client)
    response = await send(client, mine["sessionId"], theirs["continuationToken"])
    assert refusal_of(response) == STALE
    # ...and it did not spend the other session's token either.
    assert (await send(client, theirs["sessionId"], theirs["continuationToken"])).status_code == 200


async def test_in_flight(client: AsyncClient, held_turns: HeldTurns, engine: AsyncEngine) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    held = asyncio.create_task(send(client, session_id, token, "/hold"))
    await asyncio.wait_for(held_turns.entered.wait(), 10)
    version = (await session_row(engine, session_id))["version"]

    assert refusal_of(await send(client, session_id, token)) == (
        409,
        "in-flight",
        "a turn is already in flight for this session",
    )
    # A stale token is stale even while a turn is in flight (the order of section 3).
    assert refusal_of(await send(client, session_id, "forged")) == STALE
    assert (await session_row(engine, session_id))["version"] == version

    held_turns.let_go.set()
    assert (await held).status_code == 200
    assert await refused_reasons(engine, session_id) == ["in-flight", "stale-token"]


async def test_closed(client: AsyncClient) -> None:
    """A session closed while its client still holds the current token answers 410."""
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    closed = await client.delete(
        f"/v1/session/{session_id}", headers={"X-Continuation-Token": token}
    )
    assert closed.status_code == 200
    response = await send(client, session_id, token)
    assert refusal_of(response) == (410, "closed", f"session '{session_id}' is closed")
    # Without the current token, a closed session says no more than any other refusal.
    assert refusal_of(await send(client, session_id, "forged")) == STALE


async def test_a_token_presented_on_start(client: AsyncClient, engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        sessions_before = (
            await conn.execute(
                select(func.count()).select_from(events).where(events.c.kind == "started")
            )
        ).scalar()
    in_body = await client.post("/v1/session", json={"message": "hi", "continuationToken": "t"})
    in_header = await client.post(
        "/v1/session", json={"message": "hi"}, headers={"X-Continuation-Token": "t"}
    )
    assert refusal_of(in_body) == UNEXPECTED
    assert refusal_of(in_header) == UNEXPECTED
    async with engine.connect() as conn:
        sessions_after = (
            await conn.execute(
                select(func.count()).select_from(events).where(events.c.kind == "started")
            )
        ).scalar()
    assert sessions_after == sessions_before


async def test_a_session_id_presented_on_start(client: AsyncClient) -> None:
    response = await client.post(
        "/v1/session", json={"message": "hi", "sessionId": str(uuid.uuid4())}
    )
    assert refusal_of(response) == (
        400,
        "unexpected-token",
        "present no sessionId to start a session",
    )


async def test_the_token_can_travel_in_the_header(client: AsyncClient) -> None:
    session = await start(client)
    response = await send(
        client,
        session["sessionId"],
        None,
        headers={"X-Continuation-Token": session["continuationToken"]},
    )
    assert response.status_code == 200, response.text


async def test_the_body_wins_over_the_header(client: AsyncClient) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    wrong_header = await send(client, session_id, token, headers={"X-Continuation-Token": "forged"})
    assert wrong_header.status_code == 200, wrong_header.text
    right_header = await send(
        client,
        session_id,
        "forged",
        headers={"X-Continuation-Token": wrong_header.json()["continuationToken"]},
    )
    assert refusal_of(right_header) == STALE


async def test_a_null_or_empty_body_token_falls_back_to_the_header(client: AsyncClient) -> None:
    session = await start(client)
    token = session["continuationToken"]
    for absent in (None, ""):
        response = await client.post(
            f"/v1/session/{session['sessionId']}/message",
            json={"message": "m", "continuationToken": absent},
            headers={"X-Continuation-Token": token},
        )
        assert response.status_code == 200, response.text
        token = response.json()["continuationToken"]


async def test_refusals_are_events_that_leave_the_version_unchanged(
    client: AsyncClient,
    engine: AsyncEngine,
) -> None:
    session = await start(client)
    session_id = session["sessionId"]
    before = await session_row(engine, session_id)
    await send(client, session_id, None)
    await send(client, session_id, "forged")
    # The projection row is not even written (a flood of refusals must not lock the row its
    # owner's turns write): only the session's side chain moves, two refusals on.
    assert await session_row(engine, session_id) == before
    side = select(side_chains).where(side_chains.c.session_id == session_id)
    async with engine.connect() as conn:
        assert (await conn.execute(side)).one().refusals == 2
    assert await event_kinds(engine, session_id) == [
        "started",
        "record",
        "committed",
        "refused",
        "refused",
    ]
