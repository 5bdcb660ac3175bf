"""A handler's output, wait, state and records, on the run's real database: a value either
database could not store fails the turn in-band (500 turn-failed, the token still valid,
nothing committed) on both alike, and every value the rule lets through is stored and read
back as it was (domain.json.json_problem is the one rule)."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.domain.handler import Turn
from baton.domain.json import INT_RANGE, MAX_DEPTH, JsonValue
from baton.domain.outcomes import Finished, Parked
from baton.infra.settings import Settings
from tests.api.conftest import in_process_client, running
from tests.api.protocol import event_kinds, events_of, refusal_of, send, start


def nested(levels: int, inner: JsonValue) -> JsonValue:
    value = inner
    for _ in range(levels):
        value = [value]
    return value


# Values at the edge of the rule: both databases must keep each exactly.
EDGES: JsonValue = {
    "ints": [INT_RANGE.start, INT_RANGE.stop - 1, 0, -1],
    "floats": [1e308, -2.5e-308, 0.1],
    "text": ["é 漢字 😀", "\u2028\u2029\ufeff", "", "\\u0000 as text", '"quoted"'],
    "deepest": nested(MAX_DEPTH - 1, "bottom"),  # in EDGES itself: MAX_DEPTH levels
    "": {"empty key": True, "null": None},
}


def self_contained() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


UNSTORABLE: dict[str, tuple[str, Any]] = {
    "nul-output": ("output", "a\x00b"),
    "surrogate-output": ("output", {"k": "\ud83d"}),
    "big-int-state": ("state", {"n": INT_RANGE.stop}),
    "deep-wait": ("wait", nested(MAX_DEPTH + 1, "one level too many")),
    "cyclic-state": ("state", self_contained()),
    "nul-record": ("record", {"a\x00": 1}),
    "cyclic-record": ("record", self_contained()),
}
COMPLAINTS = {  # what the failure names, as domain.json.json_problem words it
    "nul-output": "NUL character",
    "surrogate-output": "lone surrogate",
    "big-int-state": "beyond 64 bits",
    "deep-wait": f"deeper than {MAX_DEPTH} levels",
    "cyclic-state": f"deeper than {MAX_DEPTH} levels",
    "nul-record": "NUL character",
    "cyclic-record": f"deeper than {MAX_DEPTH} levels",
}


async def outputs(turn: Turn) -> Finished | Parked:
    """`edges` returns EDGES as output, state and a record; `read` returns the state it
    was handed; a name in UNSTORABLE hands back that value where it says."""
    message = str(turn.input.get("message"))
    if message == "edges":
        await turn.record(EDGES)
        return Finished(EDGES, state=EDGES)
    if message == "read":
        return Finished(turn.state, state=turn.state)
    if message in UNSTORABLE:
        where, value = UNSTORABLE[message]
        if where == "record":
            await turn.record(value)
        if where == "wait":
            return Parked(value)
        return Finished(value if where == "output" else "ok", state=value)
    return Finished({"echo": message}, state={"turns": turn.number})


@pytest.fixture(scope="module")
async def client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    app = create_app(settings, handler=outputs)
    async with running(app), in_process_client(app) as client:
        yield client


@pytest.mark.parametrize("case", list(UNSTORABLE))
async def test_an_output_no_database_could_store_fails_the_turn_and_keeps_the_token(
    client: AsyncClient, engine: AsyncEngine, case: str
) -> None:
    session = await start(client)
    session_id, token = session["sessionId"], session["continuationToken"]
    before = await event_kinds(engine, session_id)
    for _ in range(2):  # repeated: the same failure, and still nothing commits
        status, reason, message = refusal_of(await send(client, session_id, token, case))
        assert (status, reason) == (500, "turn-failed")
        assert "must be JSON values" in message or "must be a JSON value" in message
        assert COMPLAINTS[case] in message
        assert "Error" not in message  # the problem in words, never an exception's name
    assert await event_kinds(engine, session_id) == [*before, *["claimed", "released"] * 2]
    after = await send(client, session_id, token, "fine")  # the token is still the current one
    assert after.status_code == 200, after.text
    assert after.json()["output"] == {"echo": "fine"}


async def test_values_at_the_edge_of_the_rule_are_stored_and_read_back_exactly(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    session = await start(client)
    reply = await send(client, session["sessionId"], session["continuationToken"], "edges")
    assert reply.status_code == 200, reply.text
    assert (reply.json()["output"], reply.json()["records"]) == (EDGES, [EDGES])
    read = await send(client, session["sessionId"], reply.json()["continuationToken"], "read")
    assert read.status_code == 200, read.text
    assert read.json()["output"] == EDGES  # the state, as the database handed it back
    stored = [event["data"] for event in await events_of(engine, session["sessionId"])]
    assert EDGES in [data.get("record") for data in stored]
