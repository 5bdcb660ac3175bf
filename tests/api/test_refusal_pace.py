"""The pace of a blocked client's 429s (api/refusal_limit.py): at most BATON_REFUSAL_PACE a
second, each request held until its slot with nothing else held, other clients never
waiting behind it, a request whose slot is past the max hold answered at once with
`Connection: close`, and every hold let go when shutdown begins."""

import asyncio
import functools
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api import lifespan
from baton.api.app import create_app
from baton.api.errors import TOO_MANY_REFUSALS, error_body
from baton.api.refusal_limit import CLIENT, RefusalLimiter
from baton.api.serving import GracefulServer
from baton.api.shutdown import ShutdownGate
from baton.infra.settings import Settings
from tests.api.conftest import in_process_client, running
from tests.api.identified import Identified
from tests.waiting import until

T = TypeVar("T")
ALICE_KEY = "alice-key-0123456789abcdef0123456789"
MALLORY_KEY = "mallory-key-0123456789abcdef01234567"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
MALLORY = {"Authorization": f"Bearer {MALLORY_KEY}"}
LIMIT = 3
# A timer may fire up to the event loop's clock resolution early (asyncio runs what is due
# within it): the lower bound on a paced burst allows for that, and for float sums.
EARLY = 0.001
# Slots this far apart never come due within a test: a held request is answered only when
# it is let go, so the tests order events instead of timing them.
GLACIAL_PACE = 0.01  # one 429 every 100 s
# How long a test waits for a held request it let go: a deadline, so that a let-go that
# does not work fails the test instead of hanging it for the rest of the hold.
LET_GO_SECONDS = 30.0


async def let_go(held: "asyncio.Task[T]") -> T:
    return await asyncio.wait_for(held, LET_GO_SECONDS)


@pytest.fixture
def database(settings: Settings, engine: AsyncEngine) -> Settings:
    """The run's settings, on its database migrated to head (`engine` migrates it)."""
    return settings


@pytest.fixture
def mallory() -> str:
    """Mallory's principal name, new in every test: the budgets live in the shared database
    and outlast a test."""
    return f"mallory-{uuid.uuid4().hex[:12]}"


def paced(settings: Settings, mallory: str, pace: float) -> Settings:
    return replace(
        settings,
        refusal_limit=LIMIT,
        refusal_window=60.0,
        refusal_pace=pace,
        api_keys=(("alice", ALICE_KEY), (mallory, MALLORY_KEY)),
    )


def hold_at_most(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The app's limiter with another max hold than MAX_HOLD_SECONDS (api/lifespan.py
    builds it)."""
    monkeypatch.setattr(
        lifespan, "RefusalLimiter", functools.partial(RefusalLimiter, max_hold=seconds)
    )


@asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    app = create_app(settings)
    async with running(app), in_process_client(app) as client:
        yield app, client


async def start(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/session", json={"message": "hi"}, headers=ALICE)
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


async def junk(client: httpx.AsyncClient, session_id: str) -> httpx.Response:
    return await client.post(
        f"/v1/session/{session_id}/message",
        json={"message": "junk", "continuationToken": "forged-token"},
        headers=MALLORY,
    )


async def block(client: httpx.AsyncClient, session_id: str) -> None:
    """Mallory spends her refusals (a session that is not hers: unknown-session)."""
    assert [(await junk(client, session_id)).status_code for _ in range(LIMIT)] == [404] * LIMIT


def assert_too_many(answer: httpx.Response, *, closed: bool) -> None:
    """The 429 as it always was: its reason, Retry-After the seconds left in the window, and
    the body api/errors.py's helper makes; `Connection: close` only when asked."""
    assert answer.status_code == 429, answer.text
    left = int(answer.headers["Retry-After"])
    assert 1 <= left <= 60
    message = f"too many refused requests from this client; retry in {left} s"
    assert answer.content == error_body(TOO_MANY_REFUSALS, message)
    assert answer.headers.get("connection") == ("close" if closed else None)


def gate_of(app: Litestar) -> ShutdownGate:
    gate = app.state.gate
    assert isinstance(gate, ShutdownGate)
    return gate


@pytest.mark.parametrize("arrival", ["concurrent", "sequential"])
async def test_a_blocked_clients_429s_come_no_faster_than_the_pace(
    database: Settings, mallory: str, arrival: str
) -> None:
    pace, burst = 20.0, 10
    async with replica(paced(database, mallory, pace)) as (_, client):
        session_id = await start(client)
        await block(client, session_id)
        began = time.monotonic()
        if arrival == "concurrent":
            answers = await asyncio.gather(*(junk(client, session_id) for _ in range(burst)))
        else:
            answers = [await junk(client, session_id) for _ in range(burst)]
        took = time.monotonic() - began
    for answer in answers:
        assert_too_many(answer, closed=False)
    # The first may go at once; each other one waits 1 / pace after the one before.
    assert took >= (burst - 1) / pace - EARLY


async def test_another_client_is_answered_while_a_blocked_one_is_held(
    database: Settings, mallory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_at_most(monkeypatch, 1000.0)
    async with replica(paced(database, mallory, GLACIAL_PACE)) as (app, client):
        gate = gate_of(app)
        session_id = await start(client)
        await block(client, session_id)
        assert_too_many(await junk(client, session_id), closed=False)  # the first slot: now
        held = asyncio.create_task(junk(client, session_id))  # the next: in 100 s
        await until(lambda: gate.held == 1, "Mallory's next junk is held")
        # Alice's turn, and a refusal of hers: answered while Mallory's request waits.
        other = await client.post("/v1/session", json={"message": "mine"}, headers=ALICE)
        assert other.status_code == 200, other.text
        refused = await client.post(
            f"/v1/session/{session_id}/message",
            json={"message": "x", "continuationToken": "not-hers-either"},
            headers=ALICE,
        )
        assert refused.status_code == 409, refused.text
        assert not held.done()
        assert gate.held == 1
        gate.let_go()  # shutdown begins: the held answer goes out now
        assert_too_many(await let_go(held), closed=True)
        # and so does every later one of a blocked client, unheld, closing its connection
        assert_too_many(await junk(client, session_id), closed=True)
        assert gate.held == 0


async def test_past_the_max_hold_the_429_comes_at_once_and_closes_the_connection(
    database: Settings, mallory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_at_most(monkeypatch, 150.0)  # one slot ahead (100 s) fits, two (200 s) do not
    async with replica(paced(database, mallory, GLACIAL_PACE)) as (app, client):
        gate = gate_of(app)
        session_id = await start(client)
        await block(client, session_id)
        assert_too_many(await junk(client, session_id), closed=False)
        held = asyncio.create_task(junk(client, session_id))
        await until(lambda: gate.held == 1, "Mallory's next junk is held")
        # Her next slot would be 200 s away: no slot, the answer at once, the line closed.
        for _ in range(3):
            assert_too_many(await junk(client, session_id), closed=True)
        assert not held.done()
        assert gate.held == 1  # the answers past the hold took no slot and hold nothing
        gate.let_go()
        assert_too_many(await let_go(held), closed=True)
        metrics = (await client.get("/metrics")).text
        assert f'baton_errors_total{{reason="{TOO_MANY_REFUSALS}"}} 5' in metrics


# ------------------------------------------------------------------ the limiter by itself

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Recorded(ShutdownGate):
    """A gate whose holds return at once, remembering how long each would have been."""

    def __init__(self) -> None:
        super().__init__()
        self.holds: list[float] = []

    async def hold(self, seconds: float) -> bool:
        self.holds.append(seconds)
        return True


class Clocks:
    def __init__(self) -> None:
        self.database = NOW
        self.monotonic = 0.0


async def blocked_limiter(
    clocks: Clocks, gate: ShutdownGate, *, pace: float, max_hold: float, client: str
) -> RefusalLimiter:
    """A limiter that has just blocked `client` for a window of 10 s (its limit is 1)."""

    async def spend(who: str, at: datetime, until: datetime) -> tuple[int, datetime]:
        return 1, until  # the limit reached at once, in a window that starts now

    limiter = RefusalLimiter(
        spend,
        1,
        10.0,
        lambda: clocks.database,
        pace=pace,
        gate=gate,
        max_hold=max_hold,
        monotonic=lambda: clocks.monotonic,
    )
    token = CLIENT.set(client)
    try:
        await limiter.spent()
    finally:
        CLIENT.reset(token)
    return limiter


async def test_slots_are_one_over_the_pace_apart_up_to_the_max_hold() -> None:
    clocks, gate = Clocks(), Recorded()
    limiter = await blocked_limiter(clocks, gate, pace=10.0, max_hold=0.2, client="m")
    kept = [await limiter.pace("m") for _ in range(5)]
    # now, 0.1 s and 0.2 s ahead (the max hold itself is allowed), then none: past it
    assert kept == [True, True, True, False, False]
    assert gate.holds == pytest.approx([0.1, 0.2])
    clocks.monotonic = 1.0  # time went by: the next slot is now again
    assert await limiter.pace("m")
    assert gate.holds == pytest.approx([0.1, 0.2])
    assert await limiter.pace("someone-not-blocked")  # no block, no wait


async def test_the_pace_is_forgotten_with_the_block() -> None:
    clocks, gate = Clocks(), Recorded()
    limiter = await blocked_limiter(clocks, gate, pace=1.0, max_hold=5.0, client="m")
    assert [await limiter.pace("m") for _ in range(3)] == [True, True, True]
    assert gate.holds == pytest.approx([1.0, 2.0])
    clocks.database = NOW + timedelta(seconds=10)  # the window ends
    assert limiter.seconds_left("m") is None
    token = CLIENT.set("m")
    await limiter.spent()  # blocked again, in a new window: a new pace, from now
    CLIENT.reset(token)
    assert limiter.seconds_left("m") == 10
    assert await limiter.pace("m")
    assert gate.holds == pytest.approx([1.0, 2.0])  # its first answer was not held


async def test_the_middleware_holds_only_the_blocked_address() -> None:
    """A blocked address's request waits for its slot; another address's goes straight to
    the app meanwhile, and the held one's body is never read."""
    gate = ShutdownGate()
    limiter = await blocked_limiter(
        Clocks(), gate, pace=GLACIAL_PACE, max_hold=1000.0, client="address:10.0.0.9"
    )
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["client"][0])

    async def unread() -> Any:
        raise AssertionError("a blocked client's body was read")

    identified = Identified(limiter, app)
    await identified.request("10.0.0.9", unread)  # its first slot: answered at once
    assert identified.sent[0]["status"] == 429
    held = asyncio.create_task(identified.request("10.0.0.9", unread))
    await until(lambda: gate.held == 1, "the blocked address's request is held")
    await identified.request("10.0.0.8", unread)
    assert reached == ["10.0.0.8"]
    assert not held.done()
    gate.let_go()
    await let_go(held)
    assert (b"connection", b"close") in identified.sent[2]["headers"]
    assert reached == ["10.0.0.8"]


async def test_a_request_whose_block_ends_while_it_waits_goes_on_to_the_app() -> None:
    """Its 429 would say "retry in 0 s": the request is answered as anyone's would be."""
    clocks = Clocks()

    class WindowEnds(ShutdownGate):
        async def hold(self, seconds: float) -> bool:
            clocks.database = NOW + timedelta(seconds=10)  # the window ends meanwhile
            return True

    limiter = await blocked_limiter(
        clocks, WindowEnds(), pace=1.0, max_hold=5.0, client="address:10.0.0.9"
    )
    reached: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(CLIENT.get())

    identified = Identified(limiter, app)
    await identified.request("10.0.0.9")  # its slot: now
    assert [message.get("status") for message in identified.sent] == [429, None]
    await identified.request("10.0.0.9")  # held 1 s: the window ends
    assert reached == ["address:10.0.0.9"]  # counted as the client it is, if refused again
    assert len(identified.sent) == 2


async def test_the_server_lets_held_answers_go_at_its_first_tick_after_sigterm() -> None:
    """handle_exit runs in a signal handler, where no future may be touched: it only closes
    the gate, and the server's next tick, in the event loop, lets the holds go."""
    gate = ShutdownGate()
    server = GracefulServer(uvicorn.Config(app="unused:app"), gate, None, grace_seconds=30.0)
    held = asyncio.create_task(gate.hold(1000.0))
    await until(lambda: gate.held == 1, "the request is held")
    server.handle_exit(signal.SIGTERM, None)
    await asyncio.sleep(0)
    assert not held.done()
    assert await server.on_tick(1)
    assert await let_go(held) is False
    assert await gate.hold(1000.0) is False  # nothing is held once shutdown began
