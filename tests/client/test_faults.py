"""baton-client through a proxy that drops connections: before the request reaches the
server, after it but before the reply, and in the middle of the reply. Every turn commits
exactly once, and the client ends holding the current token."""

import asyncio
import os
import random
from collections.abc import Iterator

import pytest
from baton_client import (
    AsyncClient,
    Delta,
    MemoryTokenStore,
    Outcome,
    Record,
    RetryPolicy,
    SavedSession,
)
from baton_client.ws import websocket

from tests.client.conftest import committed_turns
from tests.client.proxy import AFTER_REQUEST, BEFORE, MID_REPLY, Drop, DropProxy, Plan
from tests.e2e.server import BatonServer
from tests.waiting import until

pytestmark = pytest.mark.e2e

TURNS = 200
# Fast waits, and a short Retry-After: 200 turns must take seconds, not minutes.
CHAOS = RetryPolicy(
    max_attempts=40, deadline=30, base_delay=0.005, max_delay=0.05, max_retry_after=0.05
)
FAST = RetryPolicy(base_delay=0.01, max_delay=0.2, deadline=20)


@pytest.fixture
def proxy(server: BatonServer) -> Iterator[DropProxy]:
    with DropProxy(server.port) as running:
        yield running


def first_post(drop: Drop) -> Plan:
    """Apply `drop` to the next POST only."""
    left = [drop]

    def plan(head: bytes) -> Drop:
        return left.pop() if left and head.startswith(b"POST") else Drop()

    return plan


def random_plan(rng: random.Random) -> Plan:
    def plan(_: bytes) -> Drop:
        roll = rng.random()
        if roll < 0.55:
            return Drop()
        if roll < 0.70:
            return Drop(BEFORE)
        if roll < 0.85:
            return Drop(AFTER_REQUEST)
        return Drop(MID_REPLY, body_bytes=rng.randrange(0, 400))

    return plan


async def test_200_turns_with_random_drops_commit_each_turn_exactly_once(
    server: BatonServer, proxy: DropProxy
) -> None:
    seed = int(os.environ.get("BATON_CLIENT_SEED", random.randrange(2**32)))
    print(f"\nclient chaos seed {seed} (BATON_CLIENT_SEED={seed} repeats the drops)")
    proxy.plan = random_plan(random.Random(seed))
    async with AsyncClient(proxy.url, retry=CHAOS) as client:
        session = await client.start({"quick": "turn 1"})
        for n in range(2, TURNS + 2):
            if n % 3 == 0:  # every third turn streamed
                events = [event async for event in session.stream({"quick": f"turn {n}"})]
                outcome = events[-1]
                assert isinstance(outcome, Outcome)
                assert [e.record for e in events if isinstance(e, Record)] == [
                    {"quick": f"turn {n}"}
                ]
            else:
                outcome = await session.send({"quick": f"turn {n}"})
            assert (outcome.turn, outcome.output) == (n, {"echo": f"turn {n}", "turn": n})
        print(f"proxy: {dict(proxy.faults)}")
        print(f"client recovery: {client.stats.as_dict()}")
        assert min(proxy.faults[BEFORE], proxy.faults[AFTER_REQUEST], proxy.faults[MID_REPLY]) > 0
        assert client.stats.replays > 0
    session_id = str(session.session_id)
    assert await committed_turns(server.database_url, session_id) == list(range(1, TURNS + 2))
    # The token the client ends with is the current one: it reads as such (not as a consumed
    # token recovering its turn) and it runs the next turn.
    saved = SavedSession(session_id, session.continuation_token)
    async with AsyncClient(server.url, retry=FAST) as direct:
        resumed = direct.resume(MemoryTokenStore(saved))
        view = await resumed.read()
        assert (view.turn, view.status, "recovered" in view.last_outcome) == (
            TURNS + 1,
            "idle",
            False,
        )
        assert (await resumed.send({"quick": "last"})).turn == TURNS + 2


async def test_a_dropped_stream_resumes_with_last_event_id(
    server: BatonServer, proxy: DropProxy
) -> None:
    async with AsyncClient(proxy.url, retry=FAST) as client:
        session = await client.start({"quick": "one"})
        proxy.plan = first_post(Drop(MID_REPLY, marker=b"event: record"))
        turn = {"message": "/sleep", "seconds": 0.5}  # a record, then half a second of work
        events = [event async for event in session.stream(turn)]
        records = [event for event in events if isinstance(event, Record)]
        assert [record.record for record in records] == [{"sleeping": 0.5}]  # never twice
        outcome = events[-1]
        assert isinstance(outcome, Outcome)
        assert (outcome.turn, outcome.output, outcome.recovered) == (2, {"slept": 0.5}, True)
        assert session.continuation_token == outcome.continuation_token is not None
        resumes = [head.lower() for head in proxy.requests if b"/events" in head]
        assert len(resumes) == 1
        assert f"last-event-id: {records[0].seq}".encode() in resumes[0]
        assert client.stats.resumed_streams == 1
        assert client.stats.recoveries == {"events-resume": 1}
        assert (await session.send({"quick": "three"})).turn == 3
    assert await committed_turns(server.database_url, str(session.session_id)) == [1, 2, 3]


async def test_a_retry_while_the_lost_turn_still_runs_waits_it_out(
    server: BatonServer, proxy: DropProxy
) -> None:
    async with AsyncClient(proxy.url, retry=FAST) as client:
        session = await client.start({"quick": "one"})
        proxy.plan = first_post(Drop(AFTER_REQUEST))
        outcome = await session.send({"message": "/sleep", "seconds": 1.0})
        assert (outcome.turn, outcome.output, outcome.replayed) == (2, {"slept": 1.0}, True)
        assert client.stats.in_flight_waits >= 1
        assert client.stats.recoveries == {"replay": 1}
    assert await committed_turns(server.database_url, str(session.session_id)) == [1, 2]


@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
async def test_stale_token_after_a_lost_reply_is_recovered_by_reading(
    server: BatonServer, proxy: DropProxy, streamed: bool
) -> None:
    """A hop lost the key of the first attempt, whose reply was then lost: the retry (with the
    key) is refused stale-token, and the consumed token reads the turn it committed."""
    async with AsyncClient(proxy.url, retry=FAST) as client:
        session = await client.start({"quick": "one"})
        proxy.plan = first_post(Drop(AFTER_REQUEST, strip_key=True))
        if streamed:
            outcome = [event async for event in session.stream({"quick": "two"})][-1]
        else:
            outcome = await session.send({"quick": "two"})
        assert isinstance(outcome, Outcome)
        assert (outcome.turn, outcome.output, outcome.recovered) == (
            2,
            {"echo": "two", "turn": 2},
            True,
        )
        assert client.stats.recoveries == {"read": 1}
        assert (await session.send({"quick": "three"})).turn == 3
    assert await committed_turns(server.database_url, str(session.session_id)) == [1, 2, 3]


async def test_turns_over_a_websocket_survive_a_dropped_connection(
    server: BatonServer, proxy: DropProxy
) -> None:
    async with AsyncClient(proxy.url, retry=FAST) as client:
        session = client.session()
        async with websocket(session) as socket:
            first = await socket.send({"quick": "one"})
            assert (first.turn, first.output) == (1, {"echo": "one", "turn": 1})
            events = [event async for event in socket.stream({"message": "two words"})]
            assert "".join(e.text for e in events if isinstance(e, Delta)) == "You said: two words"
            assert session.turn == 2
            dropped = [Drop(AFTER_REQUEST)]  # the next frame reaches the server, its reply not
            proxy.plan = lambda head: dropped.pop() if dropped and head[:3] != b"GET" else Drop()
            third = await socket.send({"quick": "three"})
            assert (third.turn, third.replayed) == (3, True)
        assert (await session.send({"quick": "four"})).turn == 4  # and on over HTTP
    assert await committed_turns(server.database_url, str(session.session_id)) == [1, 2, 3, 4]


async def test_following_the_events_resumes_a_dropped_stream(
    server: BatonServer, proxy: DropProxy
) -> None:
    async with AsyncClient(proxy.url, retry=FAST) as client, AsyncClient(server.url) as direct:
        session = await client.start({"quick": "one"})
        other = direct.resume(
            MemoryTokenStore(SavedSession(session.session_id, session.continuation_token))
        )
        running = asyncio.ensure_future(other.send({"message": "/sleep", "seconds": 0.5}))

        async def claimed() -> bool:
            return (await other.read()).status == "in-flight"

        await until(claimed, "the turn runs")
        proxy.plan = lambda head: (
            Drop(MID_REPLY, marker=b"event: record") if b"/events" in head else Drop()
        )
        followed = [event async for event in session.follow(after=3)]
        assert [type(event) for event in followed] == [Record, Outcome]
        assert followed[0].record == {"sleeping": 0.5}
        assert followed[1].turn == 2
        resumes = [head.lower() for head in proxy.requests if b"/events" in head]
        assert len(resumes) == 2
        assert f"last-event-id: {followed[0].seq}".encode() in resumes[1]
        assert client.stats.resumed_streams == 1
        assert (await running).turn == 2
