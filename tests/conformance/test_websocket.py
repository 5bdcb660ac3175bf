"""The WebSocket cases of PROTOCOL section 5, one by one, with the `websockets` library."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from tests.conformance.clients import Answer, read_turn
from tests.conformance.test_protocol import kinds
from tests.e2e.server import BatonServer


@asynccontextmanager
async def connect(server: BatonServer, **options: Any) -> AsyncIterator[ClientConnection]:
    url = server.url.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(url, open_timeout=30, **options) as socket:
        yield socket


async def turn(socket: ClientConnection, frame: dict[str, Any]) -> Answer:
    await socket.send(json.dumps(frame))
    return await read_turn(socket)


async def error_frame(socket: ClientConnection, frame: Any) -> dict[str, Any]:
    await socket.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))
    answer: dict[str, Any] = json.loads(await socket.recv())
    assert answer["type"] == "error", answer
    return answer


async def test_a_frame_without_a_token_starts_and_binds_then_the_connection_authorises(
    server: BatonServer,
) -> None:
    async with connect(server) as socket:
        first = await turn(socket, {"message": "one"})
        second = await turn(socket, {"message": "two"})
        third = await turn(socket, {"message": "three"})
    assert [answer.outcome["turn"] for answer in (first, second, third)] == [1, 2, 3]
    assert {answer.session_id for answer in (first, second, third)} == {first.session_id}
    assert len({first.token, second.token, third.token}) == 3
    assert third.outcome["output"] == {"reply": "You said: three", "turn": 3}


async def test_a_token_on_an_unbound_connection_without_a_session_is_unexpected(
    server: BatonServer,
) -> None:
    async with connect(server) as socket:
        answer = await error_frame(socket, {"message": "x", "continuationToken": "t"})
        assert answer == {
            "type": "error",
            "reason": "unexpected-token",
            "message": "present no continuationToken to start a session",
        }
        assert (await turn(socket, {"message": "still open"})).kind == "outcome"


async def test_attach_binds_an_unbound_connection_after_rest_validation(
    server: BatonServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        started = (await client.post("/v1/session", json={"message": "rest"})).json()
    async with connect(server) as socket:
        attach = {
            "message": "attach",
            "sessionId": started["sessionId"],
            "continuationToken": started["continuationToken"],
        }
        attached = await turn(socket, attach)
        following = await turn(socket, {"message": "bound now"})
        replayed = await turn(socket, attach)  # the attach frame again: its token is spent
    assert (attached.outcome["turn"], following.outcome["turn"]) == (2, 3)
    assert (replayed.kind, replayed.reason) == ("error", "stale-token")


async def test_a_session_without_a_token_on_an_unbound_connection_is_missing_token(
    server: BatonServer,
) -> None:
    async with connect(server) as socket:
        started = await turn(socket, {"message": "a"})
    async with connect(server) as socket:
        answer = await error_frame(socket, {"message": "x", "sessionId": started.session_id})
    assert (answer["reason"], answer["message"]) == ("missing-token", "missing continuationToken")


async def test_a_held_token_is_read_fresh_so_a_rest_turn_elsewhere_makes_it_stale(
    server: BatonServer,
) -> None:
    async with connect(server) as socket:
        started = await turn(socket, {"message": "ws"})
        async with httpx.AsyncClient(base_url=server.url) as client:
            moved = await client.post(
                f"/v1/session/{started.session_id}/message",
                json={"message": "rest", "continuationToken": started.token},
            )
        assert moved.status_code == 200
        held = await turn(socket, {"message": "with the held token"})
        assert (held.kind, held.reason) == ("error", "stale-token")
        stale = await turn(socket, {"message": "x", "continuationToken": started.token})
        assert (stale.kind, stale.reason) == ("error", "stale-token")
        current = moved.json()["continuationToken"]
        presented = await turn(socket, {"message": "fresh", "continuationToken": current})
        assert (presented.kind, presented.outcome["turn"]) == ("outcome", 3)
        assert (await turn(socket, {"message": "held again"})).outcome["turn"] == 4


async def test_two_frames_racing_on_one_connection_one_claims_one_is_in_flight(
    server: BatonServer, engine: AsyncEngine, tmp_path: Path
) -> None:
    let_go = tmp_path / "let-go"
    async with connect(server) as socket:
        started = await turn(socket, {"message": "a"})
        await socket.send(json.dumps({"message": "/hold", "until": str(let_go)}))
        await socket.send(json.dumps({"message": "racing"}))
        # The held turn's record and the refusal race each other too: either may come first.
        frames = [json.loads(await socket.recv()) for _ in range(2)]
        frames.sort(key=lambda frame: str(frame["type"]))
        assert [frame["type"] for frame in frames] == ["error", "record"]
        assert frames[0] == {
            "type": "error",
            "reason": "in-flight",
            "message": "a turn is already in flight for this session",
        }
        let_go.touch()
        held = await read_turn(socket)
        assert held.outcome["output"] == {"held": True}
        assert (await turn(socket, {"message": "after"})).kind == "outcome"
    stored = await kinds(engine, started.session_id)
    assert stored.count("refused") == 1
    assert stored.count("committed") == 3


async def test_a_bound_connection_refuses_to_speak_for_another_session(
    server: BatonServer,
) -> None:
    async with connect(server) as other:
        elsewhere = await turn(other, {"message": "other"})
    async with connect(server) as socket:
        mine = await turn(socket, {"message": "mine"})
        answer = await error_frame(socket, {"message": "x", "sessionId": elsewhere.session_id})
        assert answer["reason"] == "bad-request"
        assert answer["message"] == f"this connection is bound to session '{mine.session_id}'"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "frame is not JSON"),
        ("[1, 2]", "frame must be a JSON object"),
        (b"\x00binary", "frames must be JSON text frames"),
        ({"message": "x", "continuationToken": 7}, "continuationToken must be a string"),
        ({"message": "x", "sessionId": ["no"]}, "sessionId must be a string"),
    ],
)
async def test_a_bad_frame_is_answered_in_band_and_the_connection_stays_open(
    server: BatonServer, frame: Any, message: str
) -> None:
    async with connect(server) as socket:
        for _ in range(2):  # repeated: the same answer each time
            answer = await error_frame(socket, frame)
            assert answer["reason"] == "bad-request"
            assert answer["message"].startswith(message)
        assert (await turn(socket, {"message": "fine"})).kind == "outcome"


async def test_a_frame_over_the_size_limit_closes_the_connection_1009(server: BatonServer) -> None:
    async with connect(server, max_size=None) as socket:
        await socket.send(json.dumps({"message": "x" * (2 * 1024 * 1024)}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


@pytest.mark.parametrize(
    "where",
    [{"additional_headers": {"X-Continuation-Token": "t"}}, {"query": "continuationToken=t"}],
)
async def test_a_token_in_the_upgrade_request_is_refused(
    server: BatonServer, where: dict[str, Any]
) -> None:
    url = server.url.replace("http://", "ws://") + "/v1/ws"
    if "query" in where:
        url, where = f"{url}?{where['query']}", {}
    async with websockets.connect(url, **where) as socket:
        answer = json.loads(await socket.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert answer["reason"] == "bad-request"
    assert "never in the upgrade request" in answer["message"]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


async def test_a_failed_start_unbinds_so_the_next_frame_starts_afresh(server: BatonServer) -> None:
    async with connect(server) as socket:
        failed = await turn(socket, {"message": "/fail"})
        fresh = await turn(socket, {"message": "again"})
    assert (failed.kind, failed.reason) == ("error", "turn-failed")
    assert (fresh.kind, fresh.outcome["turn"]) == ("outcome", 1)


async def test_a_client_that_disconnects_mid_turn_does_not_stop_the_commit(
    server: BatonServer, engine: AsyncEngine, tmp_path: Path
) -> None:
    let_go = tmp_path / "let-go"
    async with connect(server) as socket:
        started = await turn(socket, {"message": "a"})
        await socket.send(json.dumps({"message": "/hold", "until": str(let_go)}))
        assert json.loads(await socket.recv())["type"] == "record"
    let_go.touch()
    for _ in range(500):
        if (await kinds(engine, started.session_id)).count("committed") == 2:
            break
        await asyncio.sleep(0.01)
    assert (await kinds(engine, started.session_id))[-1] == "committed"
