"""Two tenants on a real server (issue 13): over every transport B cannot use or learn of A's
session; the WebSocket upgrade asks too; `baton history` names who did what, and `baton
verify` holds over it. Both backends."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.databases import fresh_database
from tests.e2e.operators import baton
from tests.e2e.server import BatonServer

pytestmark = pytest.mark.e2e
ALICE_KEY = "alice-key-0123456789abcdef0123456789"
BOB_KEY = "bob-key-0123456789abcdef0123456789abcd"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}


@pytest.fixture
def server(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BatonServer]:
    monkeypatch.setenv("BATON_API_KEYS", f"alice:{ALICE_KEY},bob:{BOB_KEY}")
    with (
        fresh_database(backend, tmp_path) as url,
        BatonServer(url, tmp_path / "server.log") as running,
    ):
        yield running


def socket_url(server: BatonServer) -> str:
    return server.url.replace("http", "ws") + "/v1/ws"


async def frames_until_end(socket: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in {"outcome", "error"}:
        frames.append(json.loads(await socket.recv()))
    return frames


async def test_a_websocket_is_asked_who_it_is_and_sees_only_its_own_sessions(
    server: BatonServer,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(socket_url(server)):
            pass
    assert refused.value.response.status_code in {401, 403}  # refused at the handshake

    async with websockets.connect(socket_url(server), additional_headers=ALICE) as alice:
        await alice.send(json.dumps({"message": "hello"}))
        started = (await frames_until_end(alice))[-1]
    assert started["type"] == "outcome", started
    session_id, token = started["sessionId"], started["continuationToken"]

    async with websockets.connect(socket_url(server), additional_headers=BOB) as bob:
        for frame in (
            {"sessionId": session_id, "continuationToken": token, "message": "mine now"},
            {"sessionId": session_id, "continuationToken": token, "after": 0},
        ):
            await bob.send(json.dumps(frame))
            answer = (await frames_until_end(bob))[-1]
            assert (answer["type"], answer["reason"]) == ("error", "unknown-session"), answer

    async with httpx.AsyncClient(base_url=server.url) as client:
        mine = await client.post(
            f"/v1/session/{session_id}/message",
            json={"message": "still mine", "continuationToken": token},
            headers=ALICE,
        )
        assert mine.status_code == 200, mine.text

    shown = baton("history", session_id, database=server.database_url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 6, lines
    assert all(line.endswith("by key:alice") for line in lines), lines
    checked = baton("verify", database=server.database_url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
