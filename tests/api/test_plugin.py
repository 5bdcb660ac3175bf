"""BatonPlugin in a user's own app (tests/plugin_app.py): the user's route, middleware and
404 page stay the user's, Baton's routes answer as under `baton serve`, anywhere the user
mounts them; and `litestar baton ...` runs the operator commands on the plugin's database.
(The conformance suite runs whole against the same app in a process of its own.)"""

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpx import AsyncClient
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from baton import Finished, Parked, Turn
from baton.api.plugin import BatonConfig, BatonPlugin
from baton.infra.settings import Settings
from baton.infra.stores import open_database
from tests.api.conftest import in_process_client, running
from tests.databases import fresh_database
from tests.infra.test_store import committed_session
from tests.plugin_app import USER_HEADER, create, hello, stamp

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.plugin_app:app_from_env"


@pytest.fixture(scope="module")
async def user_app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    app = create(settings.database_url, "baton.api.demo:demo_handler")
    async with running(app), in_process_client(app) as client:
        yield client


async def test_the_users_route_middleware_and_404_page_stay_the_users(
    user_app: AsyncClient,
) -> None:
    own = await user_app.get("/hello")
    assert own.json() == {"hello": "from the user's own route"}
    assert own.headers[USER_HEADER] == "1"
    missing = await user_app.get("/nowhere")
    assert (missing.status_code, missing.text) == (404, "the user's own 404 page")


async def test_batons_routes_answer_as_under_baton_serve(user_app: AsyncClient) -> None:
    started = await user_app.post("/v1/session", json={"message": "hi"})
    assert started.status_code == 200, started.text
    assert started.headers[USER_HEADER] == "1"  # the user's middleware saw Baton's answer
    body = started.json()
    assert body["output"]["reply"] == "You said: hi"
    stale = await user_app.post(
        f"/v1/session/{body['sessionId']}/message",
        json={"message": "again"},
        headers={"X-Continuation-Token": "not-the-token"},
    )
    # Baton's refusals keep Baton's shape, in an app whose own errors look otherwise.
    assert stale.status_code == 409
    assert stale.json()["reason"] == "stale-token"
    schema = (await user_app.get("/schema/openapi.json")).json()
    assert {"/hello", "/v1/session", "/v1/session/{session_id}/message"} <= set(schema["paths"])
    assert (await user_app.get("/readyz")).json()["status"] == "ready"


async def echo(turn: Turn) -> Finished | Parked:
    return Finished({"echo": turn.input})


async def test_baton_mounts_under_any_path(settings: Settings, engine: AsyncEngine) -> None:
    """A handler function of the user's, the routes under /chat/v1, the OpenAPI schema
    published there, a stream's Content-Location there too."""
    config = BatonConfig(handler=echo, settings=settings, path="/chat/v1", operations=False)
    app = Litestar([hello], middleware=[stamp], plugins=[BatonPlugin(config)])
    async with running(app), in_process_client(app) as client:
        started = await client.post("/chat/v1/session", json={"n": 1})
        assert started.status_code == 200, started.text
        assert started.json()["output"] == {"echo": {"n": 1}}
        session_id, token = started.json()["sessionId"], started.json()["continuationToken"]
        streamed = await client.post(
            f"/chat/v1/session/{session_id}/message",
            json={"n": 2},
            headers={"X-Continuation-Token": token, "Accept": "text/event-stream"},
        )
        assert streamed.headers["content-location"] == f"/chat/v1/session/{session_id}/events"
        assert (await client.post("/v1/session", json={})).status_code == 404
        assert (await client.get("/healthz")).status_code == 404  # operations=False
        schema = (await client.get("/schema/openapi.json")).json()
        start = schema["paths"]["/chat/v1/session"]["post"]
        assert "Continue" in start["responses"]["200"]["links"]


async def test_an_app_without_openapi_takes_the_plugin(
    settings: Settings, engine: AsyncEngine
) -> None:
    app = Litestar(openapi_config=None, plugins=[BatonPlugin(BatonConfig(settings=settings))])
    async with running(app), in_process_client(app) as client:
        started = await client.post("/v1/session", json={"message": "hi"})
        assert started.status_code == 200, started.text
        assert (await client.get("/schema/openapi.json")).status_code == 404


def test_a_path_must_start_and_not_end_with_a_slash() -> None:
    for path in ("v1", "/v1/", ""):
        with pytest.raises(ValueError, match=r"BatonConfig\.path"):
            BatonPlugin(BatonConfig(path=path))


async def test_litestar_baton_runs_the_operator_commands_on_the_plugins_database(
    backend: str, tmp_path: Path
) -> None:
    """On a database of its own: verify judges every chain in it, and other tests leave
    theirs broken on purpose in the run's shared one."""

    def litestar_baton(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("litestar")), "--app", APP, *arguments],
            cwd=ROOT,
            env={"PATH": "", "BATON_DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    with fresh_database(backend, tmp_path) as url:
        migrated = litestar_baton("baton", "migrate")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        async with open_database(Settings(database_url=url)) as database:
            await committed_session(database.store)
        result = litestar_baton("baton", "verify")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "all chains hold" in result.stdout + result.stderr
        assert "1 session" in result.stdout + result.stderr
        listed = litestar_baton("--help")
    assert "baton" in listed.stdout
