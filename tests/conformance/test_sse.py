"""What only SSE can get wrong: event order, ids, and never streaming a refusal."""

import uuid
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import digest_token
from baton.infra.tables import events
from tests.conformance.streams import dispatched, stream
from tests.conformance.test_protocol import wait_for_status
from tests.e2e.server import BatonServer


async def start(server: BatonServer) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        body: dict[str, str] = (await client.post("/v1/session", json={"message": "hi"})).json()
        return body


async def test_records_and_deltas_come_first_then_exactly_one_outcome(
    server: BatonServer, engine: AsyncEngine
) -> None:
    response, streamed = await stream(server.url, "/v1/session", {"message": "one two three"})
    assert response.status_code == 200
    kinds = [event.event for event in streamed]
    assert kinds == ["record", "delta", "delta", "delta", "delta", "delta", "outcome"]
    assert [event.data["type"] for event in streamed] == kinds  # event: is the object's type
    assert "".join(event.data["text"] for event in streamed if event.event == "delta") == (
        "You said: one two three"
    )
    record, outcome = streamed[0], streamed[-1]
    assert all(event.id is None for event in streamed if event.event == "delta")
    assert record.id is not None
    assert outcome.id is not None
    assert int(record.id) < int(outcome.id)

    query = select(events.c.seq, events.c.kind).where(
        events.c.session_id == outcome.data["sessionId"], events.c.kind.in_(["record", "committed"])
    )
    async with engine.connect() as conn:
        stored = dict((kind, seq) for seq, kind in await conn.execute(query))
    assert (int(record.id), int(outcome.id)) == (stored["record"], stored["committed"])


async def test_ids_keep_increasing_across_turns(server: BatonServer) -> None:
    session = await start(server)
    token, ids = session["continuationToken"], []
    for _ in range(3):
        path = f"/v1/session/{session['sessionId']}/message"
        _, streamed = await stream(server.url, path, {"message": "m", "continuationToken": token})
        ids += [int(event.id) for event in streamed if event.id is not None]
        token = streamed[-1].data["continuationToken"]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_a_handler_that_raises_ends_the_open_stream_with_an_error_event(
    server: BatonServer,
) -> None:
    session = await start(server)
    path = f"/v1/session/{session['sessionId']}/message"
    response, streamed = await stream(
        server.url, path, {"message": "/fail", "continuationToken": session["continuationToken"]}
    )
    assert response.status_code == 200
    assert [event.event for event in streamed] == ["record", "error"]
    assert streamed[-1].data == {
        "type": "error",
        "message": "turn failed: the demo handler was asked to fail",
        "reason": "turn-failed",
    }
    assert streamed[-1].id is None
    _, retried = await stream(
        server.url, path, {"message": "again", "continuationToken": session["continuationToken"]}
    )
    assert retried[-1].event == "outcome"


async def test_a_refused_request_never_gets_an_event_stream(server: BatonServer) -> None:
    session = await start(server)
    path = f"/v1/session/{session['sessionId']}/message"
    refused = [
        ("/v1/session", {"continuationToken": "x"}, 400, "unexpected-token"),
        (f"/v1/session/{uuid.uuid4()}/message", {"continuationToken": "x"}, 404, "unknown-session"),
        (path, {}, 400, "missing-token"),
        (path, {"continuationToken": "forged"}, 409, "stale-token"),
        (path, {"continuationToken": 5}, 400, "bad-request"),
    ]
    for url, body, status, reason in refused:
        response, streamed = await stream(server.url, url, {"message": "m", **body})
        assert (response.status_code, response.json()["reason"]) == (status, reason)
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error", "reason"}
        assert streamed == []


async def test_a_record_reaches_the_client_while_its_turn_is_still_running(
    server: BatonServer, tmp_path: Path
) -> None:
    session = await start(server)
    let_go = tmp_path / "let-go"
    body = {
        "message": "/hold",
        "until": str(let_go),
        "continuationToken": session["continuationToken"],
    }
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        aconnect_sse(
            client, "POST", f"/v1/session/{session['sessionId']}/message", json=body
        ) as source,
    ):
        received = dispatched(source)
        first = await anext(received)
        assert first.event == "record"  # streamed live: the turn cannot end before let_go
        let_go.touch()
        rest = [event.event async for event in received]
    assert rest == ["outcome"]


async def test_a_client_that_disconnects_mid_turn_does_not_stop_the_commit(
    server: BatonServer, engine: AsyncEngine, tmp_path: Path
) -> None:
    session = await start(server)
    session_id, token = session["sessionId"], session["continuationToken"]
    let_go = tmp_path / "let-go"
    body = {"message": "/hold", "until": str(let_go), "continuationToken": token}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        aconnect_sse(client, "POST", f"/v1/session/{session_id}/message", json=body) as source,
    ):
        assert (await anext(dispatched(source))).event == "record"
    # The client is gone; now let the turn finish.
    let_go.touch()
    await wait_for_status(engine, session_id, "idle")

    query = select(events.c.issued).where(
        events.c.session_id == session_id, events.c.kind == "committed", events.c.turn == 2
    )
    async with engine.connect() as conn:
        issued = (await conn.execute(query)).scalar_one()
    # The client recovers the token its lost reply carried, through the API alone, with
    # the token it presented (PROTOCOL section 6.2).
    async with httpx.AsyncClient(base_url=server.url) as client:
        read = await client.get(
            f"/v1/session/{session_id}", headers={"X-Continuation-Token": token}
        )
        assert read.status_code == 200, read.text
        outcome = read.json()["lastOutcome"]
        assert outcome["recovered"] is True
        recovered = outcome["continuationToken"]
        assert digest_token(recovered) == issued
        reply = await client.post(
            f"/v1/session/{session_id}/message",
            json={"message": "after", "continuationToken": recovered},
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["turn"] == 3
