"""Requests that never reach the protocol get a clear 4xx and change no session."""

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.tables import events
from tests.api.protocol import all_sessions, refusal_of, start
from tests.scrape import value

MIB = 1024 * 1024


async def every_event(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every row of the event table, refusals included: a request that never reached the
    protocol is counted in metrics, never stored (PROTOCOL section 3)."""
    query = select(events.c.position, events.c.kind)
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(query.order_by(events.c.position))]


@pytest.fixture
async def unchanged(client: AsyncClient, engine: AsyncEngine):  # type: ignore[no-untyped-def]
    """A live session, and a check that the test left the tables as it found them."""
    session = await start(client)
    sessions_before, events_before = await all_sessions(engine), await every_event(engine)
    yield session
    assert await all_sessions(engine) == sessions_before
    assert await every_event(engine) == events_before


def continue_url(session: dict[str, Any]) -> str:
    return f"/v1/session/{session['sessionId']}/message"


BAD_BODIES = [
    (b"{not json", "request body is not JSON: JSON is malformed"),
    (b'{"message": "unterminated', "request body is not JSON: Input data was truncated"),
    (b"\xff\xfe\x00", "request body is not JSON: JSON is malformed"),
    (b"[1, 2]", "request body must be a JSON object"),
    (b'"a string"', "request body must be a JSON object"),
    (b"42", "request body must be a JSON object"),
    (b"null", "request body must be a JSON object"),
    (b"", "request body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "complaint"), BAD_BODIES)
@pytest.mark.parametrize("endpoint", ["start", "continue"])
async def test_a_body_that_is_not_a_json_object_is_a_bad_request(
    client: AsyncClient, unchanged: dict[str, Any], body: bytes, complaint: str, endpoint: str
) -> None:
    url = "/v1/session" if endpoint == "start" else continue_url(unchanged)
    headers = {
        "content-type": "application/json",
        "X-Continuation-Token": unchanged["continuationToken"],
    }
    if endpoint == "start":
        del headers["X-Continuation-Token"]
    for _ in range(2):  # repeated: the same answer, nothing changes
        status, reason, message = refusal_of(await client.post(url, content=body, headers=headers))
        assert (status, reason) == (400, "bad-request")
        assert complaint in message


@pytest.mark.parametrize("token", [123, 1.5, True, ["t"], {"t": 1}])
@pytest.mark.parametrize("endpoint", ["start", "continue"])
async def test_a_token_of_the_wrong_type_is_a_bad_request(
    client: AsyncClient, unchanged: dict[str, Any], token: object, endpoint: str
) -> None:
    url = "/v1/session" if endpoint == "start" else continue_url(unchanged)
    response = await client.post(url, json={"message": "m", "continuationToken": token})
    assert refusal_of(response) == (400, "bad-request", "continuationToken must be a string")


async def test_a_session_id_of_the_wrong_type_on_start_is_a_bad_request(
    client: AsyncClient, unchanged: dict[str, Any]
) -> None:
    response = await client.post("/v1/session", json={"message": "m", "sessionId": 7})
    assert refusal_of(response) == (400, "bad-request", "sessionId must be a string")


@pytest.mark.parametrize("endpoint", ["start", "continue"])
async def test_an_eight_mib_body_is_too_large(
    client: AsyncClient, unchanged: dict[str, Any], endpoint: str
) -> None:
    url = "/v1/session" if endpoint == "start" else continue_url(unchanged)
    body = {"message": "x" * (8 * MIB), "continuationToken": unchanged["continuationToken"]}
    if endpoint == "start":
        del body["continuationToken"]
    response = await client.post(url, json=body)
    assert refusal_of(response) == (413, "too-large", "request body is too large")


async def test_a_body_just_under_the_limit_is_accepted(client: AsyncClient) -> None:
    padding = "x" * (MIB - 100)
    response = await client.post("/v1/session", json={"message": "m", "padding": padding})
    assert response.status_code == 200, response.text[:200]


async def test_a_ten_kb_session_id_is_an_unknown_session_cut_short(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    """A protocol refusal (so stored, unlike the bad requests above), cut to 200 characters."""
    session = await start(client)
    huge = "s" * 10_000
    response = await client.post(
        f"/v1/session/{huge}/message",
        json={"message": "m", "continuationToken": session["continuationToken"]},
    )
    assert refusal_of(response) == (404, "unknown-session", f"unknown session '{'s' * 200}'")
    query = select(events.c.session_id, events.c.data).order_by(events.c.position.desc()).limit(1)
    async with engine.connect() as conn:
        stored = (await conn.execute(query)).one()
    assert stored.session_id is None
    assert stored.data == {"reason": "unknown-session", "sessionId": "s" * 200}


async def test_bad_requests_are_counted_in_metrics(client: AsyncClient) -> None:
    def count(text: str) -> float:
        return value(text, "baton_errors_total", reason="bad-request")

    before = count((await client.get("/metrics")).text)
    await client.post("/v1/session", content=b"[]", headers={"content-type": "application/json"})
    assert count((await client.get("/metrics")).text) == before + 1


async def test_unknown_routes_and_methods_answer_in_the_same_json_shape(
    client: AsyncClient,
) -> None:
    assert refusal_of(await client.get("/v1/nothing-here"))[:2] == (404, "not-found")
    assert refusal_of(await client.get("/v1/session"))[:2] == (405, "method-not-allowed")
