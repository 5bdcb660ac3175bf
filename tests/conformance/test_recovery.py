"""Recovery through the API alone (PROTOCOL section 6), against a real server: reading a
session with the current or the consumed token, its events as JSON and as a resumable SSE
stream, resuming over WebSocket, Idempotency-Key retries over every transport, cancelling a
running turn, and the hints generic clients go by."""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection

from baton.infra.tables import events, sessions
from tests.conformance.streams import RawEvent, parse_blocks
from tests.e2e.server import BatonServer
from tests.waiting import until

TOKEN = "X-Continuation-Token"
KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
SSE = {"Accept": "text/event-stream"}
TIMEOUT = 30
STALE = (409, "stale-token", "stale or invalid continuationToken")
IN_FLIGHT = (409, "in-flight", "a turn is already in flight for this session")
MISMATCH = (
    422,
    "idempotency-mismatch",
    "this Idempotency-Key was used with another input; use a new key for a new turn",
)
KEY_SPENT = (409, "stale-token", "the session this Idempotency-Key started has moved on")
CANCELLED_MESSAGE = "the turn was cancelled by the holder of its token"
NEVER_RETRY = {"X-Should-Retry": "false"}
RETRY_LATER = {"Retry-After": "1"}
HINTS = ("Retry-After", "X-Should-Retry")


def new_key() -> str:
    return secrets.token_urlsafe(24)


def reply(message: str, turn: int) -> dict[str, Any]:
    """What the demo handler answers."""
    return {"reply": f"You said: {message}", "turn": turn}


# ---------------------------------------------------------------- speaking to the server


@asynccontextmanager
async def http(server: BatonServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


async def post(
    server: BatonServer,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async with http(server) as client:
        return await client.post(path, json=body, headers=headers)


async def get(
    server: BatonServer,
    path: str,
    token: str | None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {**({TOKEN: token} if token is not None else {}), **(headers or {})}
    async with http(server) as client:
        return await client.get(path, headers=sent, params=params)


async def start(server: BatonServer, message: str = "hello") -> dict[str, Any]:
    response = await post(server, "/v1/session", {"message": message})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def send(
    server: BatonServer,
    session_id: str,
    token: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await post(
        server,
        f"/v1/session/{session_id}/message",
        {**body, "continuationToken": token},
        headers,
    )


async def sent(server: BatonServer, session_id: str, token: str, message: str) -> dict[str, Any]:
    response = await send(server, session_id, token, {"message": message})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error", "reason"}, body
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, body["reason"], body["error"]


def hints(response: httpx.Response | Mapping[str, str]) -> dict[str, str]:
    """The hints for generic clients (PROTOCOL section 6.6) an answer carries."""
    headers = response.headers if isinstance(response, httpx.Response) else response
    return {name: headers[name] for name in HINTS if name in headers}


def session_path(session_id: str, tail: str = "") -> str:
    return f"/v1/session/{session_id}{tail}"


async def read(server: BatonServer, session_id: str, token: str | None) -> httpx.Response:
    return await get(server, session_path(session_id), token)


async def event_list(
    server: BatonServer,
    session_id: str,
    token: str,
    after: str | None = None,
    last_event_id: str | None = None,
) -> list[dict[str, Any]]:
    response = await get(
        server,
        session_path(session_id, "/events"),
        token,
        headers={"Last-Event-ID": last_event_id} if last_event_id is not None else None,
        params={"after": after} if after is not None else None,
    )
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def raw_messages(text: str) -> list[str]:
    """An SSE body's messages, comments dropped, in the server's own framing."""
    blocks = [block for block in text.split("\r\n\r\n") if block]
    return [block for block in blocks if not block.startswith(":")]


async def events_stream(
    server: BatonServer,
    session_id: str,
    token: str,
    after: str | None = None,
    last_event_id: str | None = None,
) -> tuple[httpx.Response, list[RawEvent]]:
    """An events stream of a session with nothing in flight: it ends after the replay."""
    headers = {**SSE, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    response = await get(
        server,
        session_path(session_id, "/events"),
        token,
        headers=headers,
        params={"after": after} if after is not None else None,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return response, parse_blocks(response.text)


def as_objects(streamed: list[RawEvent]) -> list[dict[str, Any]]:
    """What an SSE stream of stored events carried, checked against its ids (id == seq)."""
    for event in streamed:
        assert event.id == str(event.data["seq"]), event
        assert event.event == event.data["type"], event
    return [event.data for event in streamed]


async def rows(engine: AsyncEngine, session_id: str) -> list[dict[str, Any]]:
    query = select(events).where(events.c.session_id == session_id).order_by(events.c.position)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def kinds(engine: AsyncEngine, session_id: str) -> list[str]:
    return [row["kind"] for row in await rows(engine, session_id)]


async def status_of(engine: AsyncEngine, session_id: str) -> str | None:
    query = select(sessions.c.status).where(sessions.c.session_id == session_id)
    async with engine.connect() as conn:
        status: str | None = (await conn.execute(query)).scalar()
        return status


async def status_is(engine: AsyncEngine, session_id: str, status: str) -> bool:
    return await status_of(engine, session_id) == status


async def held_in_flight(engine: AsyncEngine, session_id: str) -> None:
    """Until the held turn runs and has journalled its record (tests.handlers "/hold")."""

    async def holding() -> bool:
        written = await kinds(engine, session_id)
        return await status_is(engine, session_id, "in-flight") and written[-1] == "record"

    await until(holding, f"session {session_id} holds a turn")


def hold(release_file: Path) -> dict[str, Any]:
    return {"message": "/hold", "until": str(release_file)}


def let_go(release_file: Path) -> None:
    release_file.touch()


@asynccontextmanager
async def socket_to(server: BatonServer) -> AsyncIterator[ClientConnection]:
    url = server.url.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(url, open_timeout=TIMEOUT) as socket:
        yield socket


async def frames_until_end(socket: ClientConnection) -> list[dict[str, Any]]:
    """Frames up to and including a turn's outcome or error."""
    received = []
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
        received.append(frame)
        if frame["type"] in {"outcome", "error"}:
            return received


# ---------------------------------------------------------------- 6.1, 6.2: reading


async def two_turns(server: BatonServer) -> tuple[dict[str, Any], dict[str, Any]]:
    """A session after two turns: the start's reply (its token consumed) and turn 2's."""
    first = await start(server, "one")
    second = await sent(server, first["sessionId"], first["continuationToken"], "two")
    return first, second


async def test_a_read_with_the_current_token_answers_the_session_and_stores_nothing(
    server: BatonServer, engine: AsyncEngine
) -> None:
    first, second = await two_turns(server)
    written = await kinds(engine, first["sessionId"])
    response = await read(server, first["sessionId"], second["continuationToken"])
    assert response.status_code == 200, response.text
    assert hints(response) == {}
    body = response.json()
    assert set(body) == {"sessionId", "status", "turn", "version", "lastOutcome", "updatedAt"}
    assert (body["sessionId"], body["status"], body["turn"], body["version"]) == (
        first["sessionId"],
        "idle",
        2,
        6,  # started, record, committed; claimed, record, committed
    )
    assert body["lastOutcome"] == {"status": "finished", "output": reply("two", 2), "turn": 2}
    assert await kinds(engine, first["sessionId"]) == written


async def test_a_read_with_the_consumed_token_recovers_the_token_its_turn_issued(
    server: BatonServer, engine: AsyncEngine
) -> None:
    first, second = await two_turns(server)
    session_id = first["sessionId"]
    response = await read(server, session_id, first["continuationToken"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 6  # a recovery takes no seq
    assert body["lastOutcome"] == {
        "status": "finished",
        "output": reply("two", 2),
        "turn": 2,
        "continuationToken": second["continuationToken"],
        "recovered": True,
    }
    (recovered,) = [row for row in await rows(engine, session_id) if row["kind"] == "recovered"]
    assert (recovered["seq"], recovered["data"]) == (None, {"turn": 2, "via": "read"})
    # The recovered token carries on; it never authorised anything by being read.
    third = await sent(server, session_id, body["lastOutcome"]["continuationToken"], "three")
    assert third["turn"] == 3


async def test_the_consumed_token_reads_nothing_once_the_next_turn_is_claimed(
    server: BatonServer,
) -> None:
    first, second = await two_turns(server)
    await sent(server, first["sessionId"], second["continuationToken"], "three")
    response = await read(server, first["sessionId"], first["continuationToken"])
    assert refusal(response) == STALE
    assert hints(response) == NEVER_RETRY
    # Nor does a consumed token ever start a turn, recovered or not.
    retried = await send(server, first["sessionId"], second["continuationToken"], {"message": "x"})
    assert refusal(retried) == STALE


async def test_a_read_of_a_running_turn_is_in_flight_and_never_refused_in_flight(
    server: BatonServer, engine: AsyncEngine, release_file: Path
) -> None:
    first = await start(server)
    session_id, token = first["sessionId"], first["continuationToken"]
    holding = asyncio.create_task(send(server, session_id, token, hold(release_file)))
    await held_in_flight(engine, session_id)
    response = await read(server, session_id, token)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["turn"]) == ("in-flight", 1)
    forged = await read(server, session_id, "A" * 43)
    assert refusal(forged) == STALE
    assert hints(forged) == NEVER_RETRY
    let_go(release_file)
    assert (await holding).status_code == 200


async def test_read_refusals_carry_their_status_reason_and_hints(server: BatonServer) -> None:
    first = await start(server)
    session_id, token = first["sessionId"], first["continuationToken"]
    ghost = "0190f5a2-1b3c-7d4e-8f60-123456789abc"
    unknown = await read(server, ghost, token)
    assert refusal(unknown) == (404, "unknown-session", f"unknown session '{ghost}'")
    missing = await read(server, session_id, None)
    assert refusal(missing) == (400, "missing-token", "missing continuationToken")
    assert hints(missing) == {}
    async with http(server) as client:
        closing = await client.delete(session_path(session_id), headers={TOKEN: token})
    assert closing.status_code == 200, closing.text
    closed = await read(server, session_id, token)
    assert refusal(closed) == (410, "closed", f"session '{session_id}' is closed")
    assert hints(closed) == NEVER_RETRY
    assert refusal(await read(server, session_id, "forged")) == STALE


# ---------------------------------------------------------------- 6.3: events as JSON


async def failed_then_retried(server: BatonServer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seqs: 1 started, 2 record, 3 committed; 4 claimed, 5 record, 6 released (the handler
    failed); 7 claimed, 8 record, 9 committed."""
    first = await start(server, "one")
    session_id, token = first["sessionId"], first["continuationToken"]
    failed = await send(server, session_id, token, {"message": "/fail"})
    assert refusal(failed)[:2] == (500, "turn-failed")
    again = await sent(server, session_id, token, "again")
    return first, again


def expected_events(session_id: str) -> list[dict[str, Any]]:
    """The events of `failed_then_retried`, as the events endpoint answers them."""
    return [
        {"type": "record", "record": {"role": "user", "text": "one"}, "turn": 1, "seq": 2},
        {
            "type": "outcome",
            "sessionId": session_id,
            "status": "finished",
            "output": reply("one", 1),
            "turn": 1,
            "seq": 3,
        },
        {
            "type": "record",
            "record": {"role": "user", "text": "/fail"},
            "turn": 2,
            "seq": 5,
            "void": True,
        },
        {
            "type": "error",
            "reason": "turn-failed",
            "message": "turn failed: the demo handler was asked to fail",
            "turn": 2,
            "seq": 6,
        },
        {"type": "record", "record": {"role": "user", "text": "again"}, "turn": 2, "seq": 8},
        {
            "type": "outcome",
            "sessionId": session_id,
            "status": "finished",
            "output": reply("again", 2),
            "turn": 2,
            "seq": 9,
        },
    ]


def two_turns_events(session_id: str) -> list[dict[str, Any]]:
    """The events of `two_turns`, as the events endpoint answers them."""
    return [
        {"type": "record", "record": {"role": "user", "text": "one"}, "turn": 1, "seq": 2},
        {
            "type": "outcome",
            "sessionId": session_id,
            "status": "finished",
            "output": reply("one", 1),
            "turn": 1,
            "seq": 3,
        },
        {"type": "record", "record": {"role": "user", "text": "two"}, "turn": 2, "seq": 5},
        {
            "type": "outcome",
            "sessionId": session_id,
            "status": "finished",
            "output": reply("two", 2),
            "turn": 2,
            "seq": 6,
        },
    ]


async def test_events_are_the_turn_objects_with_seqs_and_a_failed_attempts_records_void(
    server: BatonServer,
) -> None:
    first, again = await failed_then_retried(server)
    session_id = first["sessionId"]
    listed = await event_list(server, session_id, again["continuationToken"])
    assert listed == expected_events(session_id)


async def test_events_after_a_seq_and_last_event_id_which_wins(server: BatonServer) -> None:
    first, again = await failed_then_retried(server)
    session_id, token = first["sessionId"], again["continuationToken"]
    expected = expected_events(session_id)
    assert await event_list(server, session_id, token, after="3") == expected[2:]
    assert await event_list(server, session_id, token, after="") == expected
    assert await event_list(server, session_id, token, last_event_id="6") == expected[4:]
    assert await event_list(server, session_id, token, after="1", last_event_id="8") == expected[5:]
    assert await event_list(server, session_id, token, after="9") == []


async def test_events_read_with_the_consumed_token_carry_the_token_the_turn_issued(
    server: BatonServer, engine: AsyncEngine
) -> None:
    first, again = await failed_then_retried(server)
    session_id = first["sessionId"]
    listed = await event_list(server, session_id, first["continuationToken"])
    expected = expected_events(session_id)
    expected[-1] = {
        **expected[-1],
        "continuationToken": again["continuationToken"],
        "recovered": True,
    }
    assert listed == expected  # only turn 2's outcome: turn 1's token was spent
    recovered = [row for row in await rows(engine, session_id) if row["kind"] == "recovered"]
    assert [(row["seq"], row["data"]) for row in recovered] == [
        (None, {"turn": 2, "via": "events"})
    ]


async def test_events_refusals_are_those_of_a_read(server: BatonServer) -> None:
    first, second = await two_turns(server)
    session_id = first["sessionId"]
    await sent(server, session_id, second["continuationToken"], "three")
    for token in (first["continuationToken"], "forged"):
        response = await get(server, session_path(session_id, "/events"), token)
        assert refusal(response) == STALE
        assert hints(response) == NEVER_RETRY
    streamed = await get(server, session_path(session_id, "/events"), "forged", headers=SSE)
    assert refusal(streamed) == STALE  # a refusal is never a stream


# ---------------------------------------------------------------- 6.3: events as SSE


async def test_an_events_stream_of_an_idle_session_primes_replays_and_ends(
    server: BatonServer,
) -> None:
    first, second = await two_turns(server)
    session_id = first["sessionId"]
    response, streamed = await events_stream(server, session_id, second["continuationToken"])
    assert raw_messages(response.text)[0] == "id: 0\r\nretry: 1000"  # no data
    assert as_objects(streamed) == two_turns_events(session_id)


async def test_an_events_stream_marks_a_failed_attempts_records_void_as_json_does(
    server: BatonServer,
) -> None:
    first, again = await failed_then_retried(server)
    session_id = first["sessionId"]
    _, streamed = await events_stream(server, session_id, again["continuationToken"])
    assert as_objects(streamed) == expected_events(session_id)


async def test_an_events_stream_resumes_after_last_event_id(server: BatonServer) -> None:
    first, again = await failed_then_retried(server)
    session_id, token = first["sessionId"], again["continuationToken"]
    response, streamed = await events_stream(server, session_id, token, last_event_id="5")
    assert raw_messages(response.text)[0] == "id: 5\r\nretry: 1000"
    assert as_objects(streamed) == expected_events(session_id)[3:]
    response, streamed = await events_stream(server, session_id, token, after="9")
    assert raw_messages(response.text) == ["id: 9\r\nretry: 1000"]
    assert streamed == []


async def test_an_events_stream_follows_a_held_turn_to_its_outcome_then_ends(
    server: BatonServer, engine: AsyncEngine, release_file: Path
) -> None:
    first = await start(server)
    session_id, token = first["sessionId"], first["continuationToken"]
    holding = asyncio.create_task(send(server, session_id, token, hold(release_file)))
    await until(
        lambda: status_is(engine, session_id, "in-flight"), f"session {session_id} is in flight"
    )
    followed: list[RawEvent] = []
    async with (
        http(server) as client,
        client.stream(
            "GET",
            session_path(session_id, "/events"),
            params={"after": "3"},
            headers={**SSE, TOKEN: token},
        ) as response,
    ):
        assert response.status_code == 200
        pending = ""
        async for chunk in response.aiter_text():
            pending += chunk
            complete, _, pending = pending.rpartition("\r\n\r\n")
            if not complete:
                continue
            parsed = parse_blocks(complete + "\r\n\r\n")
            followed += parsed
            if any(event.event == "record" for event in parsed):
                let_go(release_file)  # the stream saw the turn while it was still held
    # The stream ended by itself, after the turn's outcome.
    done = await holding
    assert done.status_code == 200, done.text
    objects = as_objects(followed)
    assert [(item["type"], item["seq"]) for item in objects] == [("record", 5), ("outcome", 6)]
    assert objects[0]["record"] == {"holding": str(release_file)}
    # The token the stream was resumed with is the one the turn consumed: once the turn
    # commits, it recovers the token the turn issued, so the outcome carries it (6.2).
    recovered = objects[1].pop("continuationToken")
    assert objects[1] == {
        "type": "outcome",
        "sessionId": session_id,
        "status": "finished",
        "output": {"held": True},
        "turn": 2,
        "seq": 6,
        "recovered": True,
    }
    assert recovered == done.json()["continuationToken"]


async def test_a_turn_stream_primes_with_its_claim_seq_and_names_where_it_resumes(
    server: BatonServer,
) -> None:
    first = await start(server)
    session_id = first["sessionId"]
    async with http(server) as client:
        response = await client.post(
            session_path(session_id, "/message"),
            json={"message": "two words", "continuationToken": first["continuationToken"]},
            headers=SSE,
        )
    assert response.status_code == 200
    assert response.headers["Content-Location"] == f"/v1/session/{session_id}/events"
    assert raw_messages(response.text)[0] == "id: 4\r\nretry: 1000"  # claimed at seq 4
    streamed = parse_blocks(response.text)
    assert [(event.event, event.id) for event in streamed] == [
        ("record", "5"),
        ("delta", None),
        ("delta", None),
        ("delta", None),
        ("delta", None),
        ("outcome", "6"),
    ]


# ---------------------------------------------------------------- 6.3: resuming over WebSocket


async def resumed(
    server: BatonServer, session_id: str, token: str, count: int
) -> list[dict[str, Any]]:
    """The first `count` frames a fresh connection gets for resuming after seq 0."""
    async with socket_to(server) as socket:
        frame = {"sessionId": session_id, "continuationToken": token, "after": 0}
        await socket.send(json.dumps(frame))
        return [json.loads(await socket.recv()) for _ in range(count)]


async def test_a_websocket_resume_with_the_consumed_token_recovers_and_binds(
    server: BatonServer, engine: AsyncEngine
) -> None:
    first, second = await two_turns(server)
    session_id = first["sessionId"]
    expected = two_turns_events(session_id)
    expected[-1] = {
        **expected[-1],
        "continuationToken": second["continuationToken"],
        "recovered": True,
    }
    async with socket_to(server) as socket:
        resume = {"sessionId": session_id, "continuationToken": first["continuationToken"]}
        await socket.send(json.dumps({**resume, "after": 0}))
        received = [json.loads(await socket.recv()) for _ in expected]
        assert received == expected
        # Bound, with the recovered token: the next frame runs turn 3.
        await socket.send(json.dumps({"message": "three"}))
        frames = await frames_until_end(socket)
    assert frames[-1]["type"] == "outcome", frames
    assert (frames[-1]["turn"], frames[-1]["output"]) == (3, reply("three", 3))
    recovered = [row for row in await rows(engine, session_id) if row["kind"] == "recovered"]
    assert [row["data"] for row in recovered] == [{"turn": 2, "via": "events"}]


async def test_a_websocket_resume_marks_a_failed_attempts_records_void_as_json_does(
    server: BatonServer,
) -> None:
    first, again = await failed_then_retried(server)
    expected = expected_events(first["sessionId"])
    received = await resumed(server, first["sessionId"], again["continuationToken"], len(expected))
    assert received == expected


async def test_a_websocket_resume_follows_a_held_turn_then_runs_the_next_turn(
    server: BatonServer, engine: AsyncEngine, release_file: Path
) -> None:
    first = await start(server)
    session_id, token = first["sessionId"], first["continuationToken"]
    holding = asyncio.create_task(send(server, session_id, token, hold(release_file)))
    await held_in_flight(engine, session_id)
    async with socket_to(server) as socket:
        await socket.send(
            json.dumps({"sessionId": session_id, "continuationToken": token, "after": 3})
        )
        record = json.loads(await socket.recv())
        assert record == {
            "type": "record",
            "record": {"holding": str(release_file)},
            "turn": 2,
            "seq": 5,
        }
        let_go(release_file)
        outcome = json.loads(await socket.recv())
        assert (outcome["type"], outcome["turn"], outcome["seq"]) == ("outcome", 2, 6)
        done = await holding
        assert done.status_code == 200, done.text
        # Resumed with the token the turn consumed: its outcome recovers the issued one.
        assert outcome["continuationToken"] == done.json()["continuationToken"]
        assert outcome["recovered"] is True
        await socket.send(json.dumps({"message": "three"}))
        frames = await frames_until_end(socket)
    assert frames[-1]["type"] == "outcome", frames
    assert frames[-1]["turn"] == 3


async def test_a_websocket_resume_is_refused_like_a_read(server: BatonServer) -> None:
    first = await start(server)
    async with socket_to(server) as socket:
        frame = {"sessionId": first["sessionId"], "continuationToken": "forged", "after": 0}
        await socket.send(json.dumps(frame))
        assert json.loads(await socket.recv()) == {
            "type": "error",
            "reason": "stale-token",
            "message": "stale or invalid continuationToken",
        }
        for after in (-1, "3", 1.5, True, 2**31):
            bad = {"sessionId": first["sessionId"], "continuationToken": "x", "after": after}
            await socket.send(json.dumps(bad))
            assert json.loads(await socket.recv()) == {
                "type": "error",
                "reason": "bad-request",
                "message": f"after must be a seq, from 0 to {2**31 - 1}",
            }


# ---------------------------------------------------------------- 6.4: Idempotency-Key


@dataclass
class Reply:
    """A turn request's answer, whatever carried it."""

    status: int | None  # None over WebSocket
    reason: str | None = None
    message: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    records: list[tuple[Any, str | int | None]] = field(default_factory=list)  # (record, id)
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    deltas: int = 0
    priming: str | None = None


class KeyedClient:
    """Turns with an Idempotency-Key over one transport: the header (REST, buffered or
    SSE) or the frame field `idempotencyKey` (WebSocket, each request a connection)."""

    def __init__(self, server: BatonServer, transport: str) -> None:
        self.server = server
        self.transport = transport

    async def start(self, body: dict[str, Any], key: str) -> Reply:
        return await self._turn("/v1/session", body, key)

    async def send(
        self, session_id: str, token: str, body: dict[str, Any], key: str | None
    ) -> Reply:
        path = session_path(session_id, "/message")
        return await self._turn(path, {**body, "continuationToken": token}, key, session_id)

    async def _turn(
        self, path: str, body: dict[str, Any], key: str | None, session_id: str | None = None
    ) -> Reply:
        if self.transport == "websocket":
            frame = {**body, **({"idempotencyKey": key} if key else {})}
            if session_id is not None:
                frame["sessionId"] = session_id
            return await self._frame(frame)
        headers = {**({KEY: key} if key else {}), **(SSE if self.transport == "sse" else {})}
        response = await post(self.server, path, body, headers)
        kept = {
            name: response.headers[name]
            for name in (*HINTS, REPLAYED, "Content-Location")
            if name in response.headers
        }
        if response.status_code != 200:
            status, reason, message = refusal(response)
            return Reply(status, reason, message, headers=kept)
        answer = Reply(200, headers=kept, replayed=kept.get(REPLAYED) == "true")
        if self.transport == "buffered":
            answer.outcome = response.json()
            answer.records = [(record, None) for record in answer.outcome.pop("records")]
            return answer
        answer.priming = raw_messages(response.text)[0]
        for event in parse_blocks(response.text):
            if event.event == "record":
                answer.records.append((event.data["record"], event.id))
            elif event.event == "delta":
                answer.deltas += 1
            elif event.event == "outcome":
                answer.outcome = {**event.data, "id": event.id}
            else:
                answer.reason, answer.message = event.data["reason"], event.data["message"]
        return answer

    async def _frame(self, frame: dict[str, Any]) -> Reply:
        async with socket_to(self.server) as socket:
            await socket.send(json.dumps(frame))
            frames = await frames_until_end(socket)
        answer = Reply(None)
        for item in frames:
            if item["type"] == "record":
                answer.records.append((item["record"], item.get("seq")))
            elif item["type"] == "delta":
                answer.deltas += 1
            elif item["type"] == "outcome":
                answer.outcome = {k: v for k, v in item.items() if k not in {"type", "replayed"}}
                answer.replayed = item.get("replayed", False)
            else:
                answer.reason, answer.message = item["reason"], item["message"]
        return answer


TRANSPORTS = ["buffered", "sse", "websocket"]


@pytest.fixture(params=TRANSPORTS)
def keyed(request: pytest.FixtureRequest, server: BatonServer) -> KeyedClient:
    return KeyedClient(server, str(request.param))


def refused_as(answer: Reply, keyed: KeyedClient, expected: tuple[int, str, str]) -> None:
    """A refusal: a JSON 4xx over REST (never a stream), an error frame over WebSocket."""
    status, reason, message = expected
    assert (answer.reason, answer.message) == (reason, message), answer
    assert answer.status == (None if keyed.transport == "websocket" else status)


def same_turn(first: Reply, again: Reply) -> None:
    """`again` is `first` given again: the outcome and the stored records, not run twice."""
    assert again.replayed
    assert not first.replayed
    assert again.outcome == first.outcome
    assert [record for record, _ in again.records] == [record for record, _ in first.records]
    assert again.deltas == 0  # deltas are live only, never stored


async def test_a_keyed_start_retried_gets_its_reply_again_and_one_session(
    keyed: KeyedClient, engine: AsyncEngine
) -> None:
    key = new_key()
    first = await keyed.start({"message": "hello"}, key)
    assert first.status in {200, None}
    assert REPLAYED not in first.headers
    again = await keyed.start({"message": "hello"}, key)
    same_turn(first, again)
    session_id = first.outcome["sessionId"]
    assert await kinds(engine, session_id) == ["started", "record", "committed", "recovered"]
    if keyed.transport != "websocket":
        assert again.headers[REPLAYED] == "true"
        assert hints(again.headers) == {}
    if keyed.transport == "sse":
        assert again.priming == "id: 1\r\nretry: 1000"
        assert again.records == first.records == [({"role": "user", "text": "hello"}, "2")]
        assert again.outcome["id"] == "3"
    if keyed.transport == "websocket":
        assert again.records == [({"role": "user", "text": "hello"}, 2)]


async def test_a_keyed_continue_retried_with_the_consumed_token_gets_its_reply_again(
    keyed: KeyedClient, server: BatonServer, engine: AsyncEngine
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    key = new_key()
    first = await keyed.send(session_id, token, {"message": "two"}, key)
    assert first.outcome["turn"] == 2, first
    again = await keyed.send(session_id, token, {"message": "two"}, key)
    same_turn(first, again)
    if keyed.transport == "sse":
        assert again.records == first.records == [({"role": "user", "text": "two"}, "5")]
        assert again.priming == "id: 4\r\nretry: 1000"
    recovered = [row for row in await rows(engine, session_id) if row["kind"] == "recovered"]
    assert [row["data"] for row in recovered] == [{"turn": 2, "via": "replay"}]
    # The token it gave again is the current one.
    assert (await sent(server, session_id, first.outcome["continuationToken"], "3"))["turn"] == 3


async def test_the_same_key_with_another_input_is_a_mismatch_never_to_retry(
    keyed: KeyedClient, server: BatonServer
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    key = new_key()
    await keyed.send(session_id, token, {"message": "two"}, key)
    mismatch = await keyed.send(session_id, token, {"message": "changed"}, key)
    refused_as(mismatch, keyed, MISMATCH)
    start_key = new_key()
    await keyed.start({"message": "hello"}, start_key)
    other = await keyed.start({"message": "bye"}, start_key)
    refused_as(other, keyed, MISMATCH)
    if keyed.transport != "websocket":
        assert hints(mismatch.headers) == NEVER_RETRY
        assert hints(other.headers) == NEVER_RETRY


async def test_the_same_key_while_its_turn_runs_is_in_flight_retry_later(
    keyed: KeyedClient, server: BatonServer, engine: AsyncEngine, release_file: Path
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    key = new_key()
    body = hold(release_file)
    holding = asyncio.create_task(send(server, session_id, token, body, {KEY: key}))
    await held_in_flight(engine, session_id)
    running = await keyed.send(session_id, token, body, key)
    refused_as(running, keyed, IN_FLIGHT)
    if keyed.transport != "websocket":
        assert hints(running.headers) == RETRY_LATER
    let_go(release_file)
    done = await holding
    assert done.status_code == 200, done.text
    again = await keyed.send(session_id, token, body, key)
    assert again.replayed
    assert again.outcome["continuationToken"] == done.json()["continuationToken"]


async def test_a_keyed_start_retried_while_its_first_turn_runs_is_in_flight(
    keyed: KeyedClient, server: BatonServer, engine: AsyncEngine, release_file: Path
) -> None:
    key = new_key()
    body = hold(release_file)
    holding = asyncio.create_task(post(server, "/v1/session", body, {KEY: key}))

    async def holding_started() -> bool:
        async with engine.connect() as conn:
            found = await conn.execute(
                select(events.c.session_id).where(
                    events.c.kind == "record",
                    events.c.data["record"]["holding"].as_string() == str(release_file),
                )
            )
            return found.first() is not None

    await until(holding_started, "the keyed start holds its first turn")
    running = await keyed.start(body, key)
    refused_as(running, keyed, IN_FLIGHT)
    let_go(release_file)
    done = await holding
    assert done.status_code == 200, done.text
    again = await keyed.start(body, key)
    assert again.replayed
    assert again.outcome["sessionId"] == done.json()["sessionId"]


async def test_a_start_key_is_spent_once_its_session_moves_on(
    keyed: KeyedClient, server: BatonServer
) -> None:
    key = new_key()
    first = await keyed.start({"message": "hello"}, key)
    await sent(server, first.outcome["sessionId"], first.outcome["continuationToken"], "two")
    spent = await keyed.start({"message": "hello"}, key)
    refused_as(spent, keyed, KEY_SPENT)
    if keyed.transport != "websocket":
        assert hints(spent.headers) == NEVER_RETRY


async def test_a_key_authorises_nothing_by_itself(keyed: KeyedClient, server: BatonServer) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    key = new_key()
    first = await keyed.send(session_id, token, {"message": "two"}, key)
    assert first.outcome["turn"] == 2
    for presented, with_key in ((token, None), ("forged", key), (token, new_key())):
        answer = await keyed.send(session_id, presented, {"message": "two"}, with_key)
        refused_as(answer, keyed, STALE)
        if keyed.transport != "websocket":
            assert hints(answer.headers) == NEVER_RETRY


async def test_a_replay_gives_only_the_records_of_the_attempt_that_committed(
    keyed: KeyedClient, server: BatonServer
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    key = new_key()
    failed = await keyed.send(session_id, token, {"message": "/fail"}, key)
    assert failed.reason == "turn-failed"
    # The failed attempt kept no reply: the key may bring another input.
    first = await keyed.send(session_id, token, {"message": "again"}, key)
    again = await keyed.send(session_id, token, {"message": "again"}, key)
    same_turn(first, again)
    expected_id: str | int | None = {"buffered": None, "sse": "8", "websocket": 8}[keyed.transport]
    assert again.records == [({"role": "user", "text": "again"}, expected_id)]


async def test_a_keyed_retry_of_a_failed_turn_runs_it_again(
    server: BatonServer, engine: AsyncEngine
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    key = new_key()
    for _ in range(2):
        failed = await send(server, session_id, token, {"message": "/fail"}, {KEY: key})
        assert refusal(failed) == (
            500,
            "turn-failed",
            "turn failed: the demo handler was asked to fail",
        )
        assert REPLAYED not in failed.headers
    assert (await kinds(engine, session_id)).count("released") == 2


# ---------------------------------------------------------------- 6.5: cancelling


async def cancel(
    server: BatonServer, session_id: str, token: str | None, wait: str | None = None
) -> httpx.Response:
    async with http(server) as client:
        return await client.post(
            session_path(session_id, "/cancel"),
            headers={TOKEN: token} if token is not None else None,
            params={"wait": wait} if wait is not None else None,
        )


async def cancelled_in_store(engine: AsyncEngine, session_id: str) -> None:
    """The store shows the request, then the turn's release as cancelled."""
    stored = await rows(engine, session_id)
    assert [row["kind"] for row in stored][-3:] == ["record", "cancel-requested", "released"]
    asked, released = stored[-2:]
    assert (asked["seq"], asked["turn"]) == (released["seq"] - 1, released["turn"])
    assert released["data"] == {"cause": "cancelled", "error": CANCELLED_MESSAGE}


@pytest.mark.parametrize("transport", ["buffered", "sse"])
async def test_a_cancel_over_rest_stops_the_running_turn_and_the_token_stays_valid(
    server: BatonServer, engine: AsyncEngine, release_file: Path, transport: str
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    holding = asyncio.create_task(
        KeyedClient(server, transport).send(session_id, token, hold(release_file), None)
    )
    await held_in_flight(engine, session_id)
    stopped = await cancel(server, session_id, token)
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert (body["sessionId"], body["status"], body["turn"], body["version"]) == (
        session_id,
        "idle",
        1,
        7,  # ...claimed 4, record 5, cancel-requested 6, released 7
    )
    turn = await holding
    assert (turn.reason, turn.message) == ("cancelled", CANCELLED_MESSAGE)
    if transport == "buffered":
        assert turn.status == 409
    else:
        assert turn.status == 200  # the stream was open: an error event ends it
    await cancelled_in_store(engine, session_id)
    again = await sent(server, session_id, token, "after the cancel")
    assert again["turn"] == 2


async def test_a_cancel_frame_stops_the_connections_running_turn(
    server: BatonServer, engine: AsyncEngine, release_file: Path
) -> None:
    async with socket_to(server) as socket:
        await socket.send(json.dumps({"message": "one"}))
        started = (await frames_until_end(socket))[-1]
        session_id = started["sessionId"]
        await socket.send(json.dumps(hold(release_file)))
        await held_in_flight(engine, session_id)
        await socket.send(json.dumps({"cancel": True}))  # answered by the turn's own end
        frames = await frames_until_end(socket)
        assert frames[-1] == {
            "type": "error",
            "message": CANCELLED_MESSAGE,
            "reason": "cancelled",
        }
        assert [frame["type"] for frame in frames] == ["record", "error"]
        await socket.send(json.dumps({"message": "again"}))  # the token still authorises
        after = await frames_until_end(socket)
    assert (after[-1]["type"], after[-1]["turn"]) == ("outcome", 2)
    assert after[-1]["output"] == reply("again", 2)
    stored = await kinds(engine, session_id)
    assert stored[5:8] == ["cancel-requested", "released", "claimed"]


async def test_a_cancel_frame_is_refused_without_a_session_or_with_nothing_running(
    server: BatonServer, engine: AsyncEngine
) -> None:
    async with socket_to(server) as socket:
        await socket.send(json.dumps({"cancel": True}))
        assert json.loads(await socket.recv()) == {
            "type": "error",
            "message": "nothing to cancel: this connection has no session",
            "reason": "bad-request",
        }
        await socket.send(json.dumps({"message": "one"}))
        session_id = (await frames_until_end(socket))[-1]["sessionId"]
        await socket.send(json.dumps({"cancel": True}))  # idle: a no-op, not answered
        await socket.send(json.dumps({"message": "two"}))
        frames = await frames_until_end(socket)
    assert (frames[-1]["type"], frames[-1]["turn"]) == ("outcome", 2)
    assert "cancel-requested" not in await kinds(engine, session_id)


async def test_cancelling_an_idle_session_is_a_no_op(
    server: BatonServer, engine: AsyncEngine
) -> None:
    first, second = await two_turns(server)
    session_id, token = first["sessionId"], second["continuationToken"]
    written = await kinds(engine, session_id)
    response = await cancel(server, session_id, token, wait="0")
    assert response.status_code == 200, response.text
    assert response.json() == (await read(server, session_id, token)).json()
    assert await kinds(engine, session_id) == written


async def test_cancel_refusals_carry_their_status_reason_and_hints(
    server: BatonServer, engine: AsyncEngine, release_file: Path
) -> None:
    first, second = await two_turns(server)
    session_id, token = first["sessionId"], second["continuationToken"]
    consumed = await cancel(server, session_id, first["continuationToken"])
    assert refusal(consumed) == STALE  # the consumed token reads, but never cancels
    assert hints(consumed) == NEVER_RETRY
    missing = await cancel(server, session_id, None)
    assert refusal(missing) == (400, "missing-token", "missing continuationToken")
    ghost = "0190f5a2-1b3c-7d4e-8f60-123456789abc"
    assert refusal(await cancel(server, ghost, token)) == (
        404,
        "unknown-session",
        f"unknown session '{ghost}'",
    )
    async with http(server) as client:
        closing = await client.delete(session_path(session_id), headers={TOKEN: token})
    assert closing.status_code == 200
    closed = await cancel(server, session_id, token)
    assert refusal(closed) == (410, "closed", f"session '{session_id}' is closed")
    assert hints(closed) == NEVER_RETRY
    reasons = [
        row["data"]["reason"] for row in await rows(engine, session_id) if row["kind"] == "refused"
    ]
    assert reasons == ["stale-token", "missing-token", "closed"]


# ---------------------------------------------------------------- 6.6: hints


@pytest.mark.parametrize("transport", ["buffered", "sse"])
async def test_in_flight_says_retry_later_and_an_answer_says_nothing(
    server: BatonServer, engine: AsyncEngine, release_file: Path, transport: str
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    holding = asyncio.create_task(send(server, session_id, token, hold(release_file)))
    await held_in_flight(engine, session_id)
    headers = SSE if transport == "sse" else None
    busy = await send(server, session_id, token, {"message": "x"}, headers)
    assert refusal(busy) == IN_FLIGHT
    assert hints(busy) == RETRY_LATER
    let_go(release_file)
    done = await holding
    assert done.status_code == 200
    assert hints(done) == {}
    stale = await send(server, session_id, token, {"message": "x"}, headers)
    assert refusal(stale) == STALE
    assert hints(stale) == NEVER_RETRY
