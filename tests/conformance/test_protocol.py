"""One protocol, three transports: the same cases over buffered JSON, SSE and WebSocket."""

import asyncio
import uuid
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra.tables import events, sessions
from tests.conformance.clients import Answer, TurnClient
from tests.e2e.server import BatonServer

HTTP_STATUS = {
    "unknown-session": 404,
    "missing-token": 400,
    "stale-token": 409,
    "in-flight": 409,
    "closed": 410,
    "unexpected-token": 400,
    "turn-failed": 500,
    "unavailable": 503,
}
STALE = ("stale-token", "stale or invalid continuationToken")


def refused(answer: Answer, turns: TurnClient) -> tuple[str | None, str | None]:
    """The refusal's reason and message, after checking the transport carried it right."""
    assert answer.kind == "error", answer
    if turns.name == "websocket":
        assert answer.http_status is None
    else:
        assert answer.http_status == HTTP_STATUS[answer.reason or ""], answer
        assert answer.content_type == "application/json", answer  # never a stream
    return answer.reason, answer.message


def failed(answer: Answer, turns: TurnClient) -> str | None:
    """A failed turn's message: 500 when buffered, an in-band `error` event when streamed."""
    assert (answer.kind, answer.reason) == ("error", "turn-failed"), answer
    if turns.name == "buffered":
        assert answer.http_status == HTTP_STATUS["turn-failed"]
    elif turns.name == "sse":
        assert answer.http_status == 200  # the stream was open before the handler raised
        assert answer.events[-1] == "error"
    return answer.message


async def started(turns: TurnClient, message: str = "hello") -> Answer:
    answer = await turns.start({"message": message})
    assert answer.kind == "outcome", answer
    return answer


async def test_start(turns: TurnClient) -> None:
    answer = await started(turns, "hello there")
    assert answer.outcome["status"] == "finished"
    assert answer.outcome["turn"] == 1
    assert answer.outcome["output"] == {"reply": "You said: hello there", "turn": 1}
    assert answer.records == [{"role": "user", "text": "hello there"}]
    assert len(answer.token) == 43


async def test_continue_rotates_the_token(turns: TurnClient) -> None:
    first = await started(turns)
    tokens = [first.token]
    for turn in (2, 3):
        answer = await turns.send(first.session_id, tokens[-1], {"message": f"turn {turn}"})
        assert answer.kind == "outcome", answer
        assert (answer.outcome["turn"], answer.session_id) == (turn, first.session_id)
        assert answer.token not in tokens
        tokens.append(answer.token)
    for spent in tokens[:-1]:
        assert refused(await turns.send(first.session_id, spent, {"message": "x"}), turns) == STALE


async def test_unknown_and_malformed_sessions(turns: TurnClient) -> None:
    ghost = str(uuid.uuid4())
    answer = await turns.send(ghost, "token", {"message": "x"})
    assert refused(answer, turns) == ("unknown-session", f"unknown session '{ghost}'")
    answer = await turns.send("not-a-session", "token", {"message": "x"})
    assert refused(answer, turns) == ("unknown-session", "unknown session 'not-a-session'")


async def test_missing_token(turns: TurnClient) -> None:
    session = await started(turns)
    answer = await turns.send(session.session_id, None, {"message": "x"})
    assert refused(answer, turns) == ("missing-token", "missing continuationToken")


async def test_forged_and_foreign_tokens_are_stale(turns: TurnClient) -> None:
    mine, theirs = await started(turns), await started(turns)
    for token in ("forged", "A" * 43, theirs.token):
        assert refused(await turns.send(mine.session_id, token, {"message": "x"}), turns) == STALE


async def test_a_token_on_start_is_unexpected(turns: TurnClient) -> None:
    answer = await turns.start({"message": "x", "continuationToken": "anything"})
    assert refused(answer, turns) == (
        "unexpected-token",
        "present no continuationToken to start a session",
    )


async def test_in_flight(turns: TurnClient, engine: AsyncEngine, release_file: Path) -> None:
    session = await started(turns)
    hold = {"message": "/hold", "until": str(release_file)}
    holding = asyncio.create_task(turns.send(session.session_id, session.token, hold))
    await wait_for_status(engine, session.session_id, "in-flight")
    answer = await turns.send(session.session_id, session.token, {"message": "x"})
    assert refused(answer, turns) == ("in-flight", "a turn is already in flight for this session")
    release_file.touch()  # noqa: ASYNC240 - a test's one-off file, not I/O on the hot path
    assert (await holding).kind == "outcome"


async def test_closed(turns: TurnClient, server: BatonServer) -> None:
    """A session its client closed (DELETE with the current token) answers 410 to that token."""
    session = await started(turns)
    async with httpx.AsyncClient(base_url=server.url) as client:
        closed = await client.delete(
            f"/v1/session/{session.session_id}",
            headers={"X-Continuation-Token": session.token},
        )
    assert closed.status_code == 200, closed.text
    answer = await turns.send(session.session_id, session.token, {"message": "x"})
    assert refused(answer, turns) == ("closed", f"session '{session.session_id}' is closed")


async def test_a_failed_turn_keeps_the_token(turns: TurnClient, engine: AsyncEngine) -> None:
    session = await started(turns)
    answer = await turns.send(session.session_id, session.token, {"message": "/fail"})
    assert failed(answer, turns) == "turn failed: the demo handler was asked to fail"
    retried = await turns.send(session.session_id, session.token, {"message": "again"})
    assert retried.kind == "outcome", retried
    assert retried.outcome["turn"] == 2
    assert "released" in await kinds(engine, session.session_id)


async def test_an_outage_under_a_turn_is_unavailable_and_keeps_the_token(
    turns: TurnClient, engine: AsyncEngine
) -> None:
    """The database lost under a running turn is an outage the client retries (503, or an
    in-band `unavailable` end), never the application's `turn-failed`."""
    session = await started(turns)
    answer = await turns.send(session.session_id, session.token, {"message": "/outage"})
    assert (answer.kind, answer.reason) == ("error", "unavailable"), answer
    if turns.name == "buffered":
        assert answer.http_status == HTTP_STATUS["unavailable"]
    elif turns.name == "sse":
        assert (answer.http_status, answer.events[-1]) == (200, "error")
    retried = await turns.send(session.session_id, session.token, {"message": "again"})
    assert retried.kind == "outcome", retried
    assert retried.outcome["turn"] == 2
    stored = await kinds(engine, session.session_id)
    released = stored.index("released")
    assert stored[released - 2 : released + 2] == ["claimed", "record", "released", "claimed"]
    assert stored[-1] == "committed"


async def test_a_parked_turn(turns: TurnClient) -> None:
    session = await started(turns)
    parked = await turns.send(session.session_id, session.token, {"message": "/park"})
    assert parked.kind == "outcome", parked
    assert (parked.outcome["status"], parked.outcome["wait"]) == ("parked", {"for": "message"})
    assert "output" not in parked.outcome
    resumed = await turns.send(session.session_id, parked.token, {"message": "back"})
    assert resumed.outcome["output"] == {"reply": "You said: back", "turn": 3}


async def test_thirty_racers_one_token_one_turn(turns: TurnClient, engine: AsyncEngine) -> None:
    session = await started(turns)
    answers = await asyncio.gather(
        *(turns.send(session.session_id, session.token, {"message": "race"}) for _ in range(30))
    )
    winners = [answer for answer in answers if answer.kind == "outcome"]
    losers = {refused(answer, turns)[0] for answer in answers if answer.kind != "outcome"}
    assert len(winners) == 1
    assert losers <= {"in-flight", "stale-token"}
    assert await count_kind(engine, session.session_id, "claimed") == 1
    assert await count_kind(engine, session.session_id, "committed") == 2  # start + the winner


async def wait_for_status(engine: AsyncEngine, session_id: str, status: str) -> None:
    query = select(sessions.c.status).where(sessions.c.session_id == session_id)
    for _ in range(1000):
        async with engine.connect() as conn:
            if (await conn.execute(query)).scalar() == status:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"session {session_id} never became {status}")


async def kinds(engine: AsyncEngine, session_id: str) -> list[str]:
    query = select(events.c.kind).where(events.c.session_id == session_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query.order_by(events.c.position))).scalars())


async def count_kind(engine: AsyncEngine, session_id: str, kind: str) -> int:
    query = select(func.count()).where(events.c.session_id == session_id, events.c.kind == kind)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())
