"""Turns over the buffered JSON transport: start, rotation, parking, failure, the audit trail."""

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import digest_token
from baton.infra.tables import events
from tests.api.protocol import event_kinds, events_of, refusal_of, send, session_row, start


async def test_start_runs_turn_one_and_issues_the_first_token(client: AsyncClient) -> None:
    body = await start(client, "hello there")
    assert set(body) == {"sessionId", "continuationToken", "status", "output", "turn", "records"}
    assert body["status"] == "finished"
    assert body["turn"] == 1
    assert body["output"] == {"reply": "You said: hello there", "turn": 1}
    assert body["records"] == [{"role": "user", "text": "hello there"}]
    assert len(body["continuationToken"]) == 43


async def test_each_committed_turn_rotates_the_token_and_counts_on(client: AsyncClient) -> None:
    session = await start(client)
    seen = {session["continuationToken"]}
    token = session["continuationToken"]
    for turn in (2, 3, 4):
        response = await send(client, session["sessionId"], token, f"turn {turn}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["turn"], body["output"]["turn"]) == (turn, turn)
        assert body["continuationToken"] not in seen
        seen.add(body["continuationToken"])
        token = body["continuationToken"]


async def test_a_parked_turn_commits_and_waits(client: AsyncClient) -> None:
    session = await start(client)
    response = await send(client, session["sessionId"], session["continuationToken"], "/park")
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"sessionId", "continuationToken", "status", "wait", "turn", "records"}
    assert (body["status"], body["wait"], body["turn"]) == ("parked", {"for": "message"}, 2)
    resumed = await send(client, session["sessionId"], body["continuationToken"], "back")
    assert resumed.json()["output"] == {"reply": "You said: back", "turn": 3}


async def test_a_failed_turn_keeps_the_token_and_is_stored(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    before = await session_row(engine, session_id)

    failed = await send(client, session_id, token, "/fail")
    assert refusal_of(failed) == (
        500,
        "turn-failed",
        "turn failed: the demo handler was asked to fail",
    )
    after = await session_row(engine, session_id)
    assert (after["token_digest"], after["turn"], after["status"]) == (
        before["token_digest"],
        before["turn"],
        "idle",
    )

    retried = await send(client, session_id, token, "again")
    assert retried.status_code == 200, retried.text
    assert retried.json()["turn"] == 2  # the failed attempt at turn 2 counted for nothing

    stored = await events_of(engine, session_id)
    released = [event for event in stored if event["kind"] == "released"]
    assert len(released) == 1
    assert released[0]["turn"] == 2
    assert released[0]["data"] == {"cause": "failed", "error": "the demo handler was asked to fail"}


async def test_a_failed_start_fails_whole_and_closes_the_session(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post("/v1/session", json={"message": "/fail"})
    assert refusal_of(response) == (
        500,
        "turn-failed",
        "turn failed: the demo handler was asked to fail",
    )
    async with engine.connect() as conn:
        session_id = (
            await conn.execute(
                select(events.c.session_id)
                .where(events.c.kind == "closed")
                .order_by(events.c.position.desc())
                .limit(1)
            )
        ).scalar_one()
    assert await event_kinds(engine, session_id) == ["started", "record", "released", "closed"]
    row = await session_row(engine, session_id)
    assert (row["status"], row["token_digest"]) == ("closed", None)


async def test_every_start_claim_commit_and_refusal_is_an_event(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    session = await start(client)
    session_id, first = session["sessionId"], session["continuationToken"]
    second = (await send(client, session_id, first)).json()["continuationToken"]
    await send(client, session_id, first)  # replayed: refused
    await send(client, session_id, second, "/park")

    stored = await events_of(engine, session_id)
    assert [event["kind"] for event in stored] == [
        "started",
        "record",
        "committed",
        "claimed",
        "record",
        "committed",
        "refused",
        "claimed",
        "record",
        "committed",
    ]
    assert [event["seq"] for event in stored] == [1, 2, 3, 4, 5, 6, None, 7, 8, 9]
    committed = [event for event in stored if event["kind"] == "committed"]
    assert [event["consumed"] for event in committed] == [
        None,
        digest_token(first),
        digest_token(second),
    ]
    assert committed[0]["issued"] == digest_token(first)
    claim = stored[3]["data"]
    assert claim["input"] == {"message": "next"}  # the token is not input
    assert set(claim) == {"input", "owner", "leaseUntil"}  # ...and the claim names its holder
