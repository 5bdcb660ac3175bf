"""Closing a session with its current token (DELETE /v1/session/{id})."""

import asyncio
import uuid

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import HeldTurns
from tests.api.protocol import events_of, refusal_of, send, start


async def close(
    client: AsyncClient, session_id: str, token: str | None
) -> tuple[int, dict[str, object]]:
    headers = {"X-Continuation-Token": token} if token is not None else {}
    response = await client.delete(f"/v1/session/{session_id}", headers=headers)
    return response.status_code, response.json()


async def test_the_current_token_closes_and_later_continues_get_410(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    assert await close(client, session_id, token) == (
        200,
        {"sessionId": session_id, "status": "closed", "turn": 1},
    )
    assert refusal_of(await send(client, session_id, token)) == (
        410,
        "closed",
        f"session '{session_id}' is closed",
    )
    assert await close(client, session_id, token) == (
        410,
        {"error": f"session '{session_id}' is closed", "reason": "closed"},
    )
    stored = await events_of(engine, session_id)
    closing = [event for event in stored if event["kind"] == "closed"]
    assert len(closing) == 1
    assert closing[0]["data"] == {"cause": "client"}


async def test_closing_needs_the_current_token(client: AsyncClient) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    missing = await close(client, session_id, None)
    stale = await close(client, session_id, "forged")
    unknown = await close(client, str(uuid.uuid4()), token)
    malformed = await close(client, "not-a-session", token)
    assert (missing[0], missing[1]["reason"]) == (400, "missing-token")
    assert (stale[0], stale[1]["reason"]) == (409, "stale-token")
    assert (unknown[0], unknown[1]["reason"]) == (404, "unknown-session")
    assert (malformed[0], malformed[1]["reason"]) == (404, "unknown-session")
    assert (await send(client, session_id, token)).status_code == 200  # still open


async def test_a_session_in_flight_cannot_be_closed(
    client: AsyncClient, held_turns: HeldTurns
) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    held = asyncio.create_task(send(client, session_id, token, "/hold"))
    await asyncio.wait_for(held_turns.entered.wait(), 10)
    status, body = await close(client, session_id, token)
    held_turns.let_go.set()
    assert (status, body["reason"]) == (409, "in-flight")
    assert (await held).status_code == 200
