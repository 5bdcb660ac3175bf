"""A turn's input: bad JSON is the client's 400, input the handler does not take is the
client's 422, and neither ever reaches a 500 (PROTOCOL sections 3 and 4)."""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.api.demo import demo_handler
from baton.infra.settings import Settings
from baton.infra.tables import events, sessions
from tests.api.conftest import in_process_client, running
from tests.api.protocol import refusal_of

DEEP = b'{"message": "x", "n": ' + b"[" * 3000 + b"]" * 3000 + b"}"
NOT_STORABLE = [
    (b'{"message": "a\\u0000b"}', "NUL"),
    (b'{"message": "\\ud800"}', "not JSON"),  # a lone surrogate
    (b'{"message": "x", "n": NaN}', "not JSON"),
    (b'{"message": "x", "n": -Infinity}', "not JSON"),
    (b'{"message": "x", "n": 1e400}', "not JSON"),
    (b'{"message": "x", "n": 123456789012345678901234567890}', "beyond 64 bits"),
    (DEEP, "deeper than 64"),
    (b'{"message": "x", "n": ' + b"[" * 65 + b"]" * 65 + b"}", "deeper than 64"),
    (b'{"a\\u0000": 1, "message": "x"}', "NUL"),  # in a key too
]


@pytest.fixture(scope="module")
async def demo(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    """The app with the demo handler itself, which declares its input ({"message": str})."""
    app = create_app(settings, handler=demo_handler)
    async with running(app), in_process_client(app) as client:
        yield client


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@pytest.mark.parametrize(("body", "complaint"), NOT_STORABLE)
async def test_input_no_database_could_store_is_a_bad_request_and_stores_nothing(
    demo: AsyncClient, engine: AsyncEngine, body: bytes, complaint: str
) -> None:
    before = await count(engine, events)
    for _ in range(2):  # repeated: the same answer, nothing changes
        status, reason, message = refusal_of(await demo.post("/v1/session", content=body))
        assert (status, reason) == (400, "bad-request")
        assert complaint in message
        assert "Error" not in message  # no exception's name reaches a client
    assert await count(engine, events) == before


async def test_input_the_handler_does_not_take_is_422_before_anything_is_claimed(
    demo: AsyncClient, engine: AsyncEngine
) -> None:
    sessions_before, events_before = await count(engine, sessions), await count(engine, events)
    response = await demo.post("/v1/session", json={})
    status, reason, message = refusal_of(response)
    assert (status, reason) == (422, "invalid-input")
    assert "message" in message  # names what is missing
    assert await count(engine, sessions) == sessions_before  # no session, usable or not
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                select(events.c.kind, events.c.data).order_by(events.c.position.desc()).limit(1)
            )
        ).one()
    assert (stored.kind, stored.data["reason"]) == ("refused", "invalid-input")
    assert await count(engine, events) == events_before + 1  # the refusal, and only it


async def test_a_continue_with_input_of_the_wrong_type_keeps_the_token(demo: AsyncClient) -> None:
    started = (await demo.post("/v1/session", json={"message": "hi"})).json()
    path = f"/v1/session/{started['sessionId']}/message"
    token = started["continuationToken"]
    wrong = await demo.post(path, json={"message": 5, "continuationToken": token})
    assert refusal_of(wrong)[:2] == (422, "invalid-input")
    again = await demo.post(path, json={"message": "fine", "continuationToken": token})
    assert (again.status_code, again.json()["turn"]) == (200, 2)


async def test_the_schema_publishes_the_input_the_handler_takes(demo: AsyncClient) -> None:
    schema = (await demo.get("/schema/openapi.json")).json()
    for path in ("/v1/session", "/v1/session/{session_id}/message"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        reference = body["schema"]["allOf"][0]["$ref"]
        assert reference == "#/components/schemas/DemoInput"
    declared = schema["components"]["schemas"]["DemoInput"]
    assert declared["properties"]["message"] == {"type": "string"}
    assert declared["required"] == ["message"]


async def test_a_wrong_method_is_405_with_the_allowed_ones(demo: AsyncClient) -> None:
    response = await demo.get("/v1/session")
    assert refusal_of(response)[:2] == (405, "method-not-allowed")
    assert set(response.headers["allow"].split(", ")) == {"POST", "OPTIONS"}
    assert json.loads(response.text)["error"]


ALLOWED = {
    "/v1/session": {"POST", "OPTIONS"},
    "/v1/session/0190a5b0-0000-7000-8000-000000000000": {"GET", "DELETE", "OPTIONS"},
    "/v1/session/0190a5b0-0000-7000-8000-000000000000/message": {"POST", "OPTIONS"},
    "/v1/session/0190a5b0-0000-7000-8000-000000000000/events": {"GET", "OPTIONS"},
    "/v1/session/0190a5b0-0000-7000-8000-000000000000/cancel": {"POST", "OPTIONS"},
}


@pytest.mark.parametrize(("path", "methods"), ALLOWED.items())
async def test_options_and_a_405_list_every_method_of_the_path(
    demo: AsyncClient, path: str, methods: set[str]
) -> None:
    """RFC 9110: `Allow` lists what the resource supports. A session's own path serves GET
    and DELETE from two modules, which Litestar's own OPTIONS answered with one of them."""
    options = await demo.options(path)
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == methods
    wrong = await demo.put(path, json={})
    assert refusal_of(wrong)[:2] == (405, "method-not-allowed")
    assert set(wrong.headers["allow"].split(", ")) == methods
