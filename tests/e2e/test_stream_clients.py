"""Streams as the tools people already have see them: curl -N, and the WebSocket gate."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conformance.streams import parse_blocks
from tests.databases import IN_CI, fresh_database
from tests.e2e.server import TEST_HANDLER, BatonServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


def require(program: str) -> None:
    """Skip locally without `program`; under CI (which installs it) that is a failure."""
    if shutil.which(program) is None:
        if IN_CI:
            pytest.fail(f"{program} is not installed; CI requires it", pytrace=False)
        pytest.skip(f"{program} is not installed")


def test_curl_n_shows_a_turn_streaming(database: str, tmp_path: Path) -> None:
    require("curl")
    with BatonServer(database, tmp_path / "server.log") as server:
        body = '{"message": "streamed by curl"}'
        headers = "Accept: text/event-stream"
        curl = ["curl", "-sN", "-X", "POST", f"{server.url}/v1/session", "-H", headers, "-d", body]
        result = subprocess.run(curl, capture_output=True, text=True, timeout=30, check=True)
    streamed = parse_blocks(result.stdout)
    assert [event.event for event in streamed] == ["record"] + ["delta"] * 5 + ["outcome"]
    assert streamed[-1].data["output"] == {"reply": "You said: streamed by curl", "turn": 1}


async def test_a_server_without_websockets_refuses_the_upgrade_with_426(
    database: str, tmp_path: Path
) -> None:
    with BatonServer(database, tmp_path / "server.log", "--no-websockets") as server:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(server.url.replace("http", "ws") + "/v1/ws"):
                pass
        assert refused.value.response.status_code == 426
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).status_code == 200  # the rest still serves


async def test_a_quiet_sse_stream_is_kept_alive_with_ping_comments(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn that says nothing for a while still sends `: ping` comments, every
    BATON_SSE_PING_SECONDS (short here; 15 s by default), and then its outcome."""
    monkeypatch.setenv("BATON_SSE_PING_SECONDS", "0.1")
    with BatonServer(database, tmp_path / "server.log", "--handler", TEST_HANDLER) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            reply = await client.post(
                "/v1/session",
                json={"message": "/sleep", "seconds": 1.0},
                headers={"Accept": "text/event-stream"},
            )
    lines = reply.text.splitlines()
    pings = lines.count(": ping")
    assert pings >= 3, reply.text  # about ten in a second of silence; a loaded machine, fewer
    assert [event.event for event in parse_blocks(reply.text)] == ["record", "outcome"]
