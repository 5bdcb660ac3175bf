"""What operators and tools ask of a running Baton: liveness, readiness, the OpenAPI schema."""

from dataclasses import replace
from pathlib import Path

from httpx import AsyncClient

from baton.api.app import create_app
from baton.infra.migrate import head_revision
from baton.infra.settings import Settings
from tests.api.conftest import in_process_client, running
from tests.databases import fresh_database


async def test_healthz_says_the_process_is_up(client: AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_says_the_database_is_at_head(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ready", "revision": head_revision()},
    )


async def test_readyz_refuses_a_database_that_was_never_migrated(
    backend: str, tmp_path: Path
) -> None:
    with fresh_database(backend, tmp_path) as url:
        app = create_app(Settings(database_url=url))
        async with running(app), in_process_client(app) as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "error": f"database schema at revision None, this code expects {head_revision()}",
        "reason": "not-ready",
    }


async def test_readyz_refuses_an_unreachable_database(tmp_path: Path) -> None:
    app = create_app(Settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    async with running(app), in_process_client(app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "not-ready"
    assert response.json()["error"].startswith("database unreachable")


async def test_the_openapi_schema_documents_both_turn_endpoints(client: AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert {"/v1/session", "/v1/session/{session_id}/message"} <= set(schema["paths"])
    start = schema["paths"]["/v1/session"]["post"]
    assert {"200", "400", "409", "413", "500"} <= set(start["responses"])


async def test_without_websockets_the_socket_path_answers_426(settings: Settings) -> None:
    app = create_app(replace(settings, websockets=False))
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    async with running(app), in_process_client(app) as client:
        response = await client.get("/v1/ws", headers=upgrade)
    assert response.status_code == 426
    assert response.json() == {
        "error": "WebSockets are disabled on this server",
        "reason": "websockets-disabled",
    }
