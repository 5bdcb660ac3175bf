"""A few words for speaking the protocol in tests."""

from typing import Any

from httpx import AsyncClient, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.tables import events, sessions


async def start(client: AsyncClient, message: str = "hello") -> dict[str, Any]:
    response = await client.post("/v1/session", json={"message": message})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def send(
    client: AsyncClient,
    session_id: str,
    token: str | None,
    message: str = "next",
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"message": message}
    if token is not None:
        body["continuationToken"] = token
    return await client.post(f"/v1/session/{session_id}/message", json=body, headers=headers)


def refusal_of(response: Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error", "reason"}, body
    return response.status_code, body["reason"], body["error"]


async def event_kinds(engine: AsyncEngine, session_id: str) -> list[str]:
    query = select(events.c.kind).where(events.c.session_id == session_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query.order_by(events.c.position))).scalars())


async def events_of(engine: AsyncEngine, session_id: str) -> list[dict[str, Any]]:
    query = select(events).where(events.c.session_id == session_id).order_by(events.c.position)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def session_row(engine: AsyncEngine, session_id: str) -> dict[str, Any]:
    query = select(sessions).where(sessions.c.session_id == session_id)
    async with engine.connect() as conn:
        return dict((await conn.execute(query)).one()._mapping)


async def all_sessions(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(sessions).order_by(sessions.c.session_id))
        return [dict(row._mapping) for row in rows]
