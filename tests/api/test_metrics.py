"""/metrics after a scripted load on a real server, read with prometheus_client's own parser:
every counter equals what the load did, the histograms saw every turn, the gauges follow
open turns and streams, and no label carries a session id or a token."""

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.metrics import TRANSPORTS, TURN_STATUSES
from baton.domain.commands import ClaimTurn
from baton.domain.decisions import ClaimGranted
from baton.domain.events import Lease
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.refusals import RefusalReason
from baton.infra.stores import Database
from tests.conformance.clients import Answer, BufferedClient, SseClient, WebSocketClient
from tests.e2e.server import TEST_HANDLER, BatonServer
from tests.scrape import samples
from tests.waiting import until

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
KEY = "metrics-test-idempotency-key-0001"
LABEL_VALUE = re.compile(r"[a-z][a-z_-]{0,30}|[0-9.e+-]+|\+Inf")
Scraped = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def server(
    database_url: str, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BatonServer]:
    """A server of its own, so its counters start at zero."""
    log = tmp_path_factory.mktemp("metrics") / "server.log"
    with BatonServer(database_url, log, "--handler", TEST_HANDLER) as running:
        yield running


class Load:
    """The load as it goes: what a scrape must then say, and every secret it must not."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.turns = {(status, t): 0.0 for status in TURN_STATUSES for t in TRANSPORTS}
        self.refusals = {reason.value: 0.0 for reason in RefusalReason}
        self.errors: dict[str, float] = {}
        self.secrets: set[str] = set()  # session ids and tokens

    def ran(self, answer: Answer, transport: str, status: str | None = None) -> Answer:
        status = status or str(answer.outcome["status"])
        self.turns[status, transport] += 1
        if answer.kind == "outcome":
            self.secrets |= {answer.session_id, answer.token}
        return answer

    def refused(self, answer: Answer, reason: str, *, over_http: bool = True) -> None:
        assert (answer.kind, answer.reason) == ("error", reason)
        self.refusals[reason] += 1
        if over_http:
            self.errors[reason] = self.errors.get(reason, 0) + 1

    async def scrape(self) -> str:
        async with httpx.AsyncClient(base_url=self.url) as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return response.text


async def buffered_turns(load: Load) -> tuple[str, str]:
    """Finished, parked and failed turns, then a keyed turn, its replay and a recovery."""
    rest = BufferedClient(load.url)
    first = load.ran(await rest.start({"message": "hello"}), "rest")
    a = load.ran(await rest.send(first.session_id, first.token, {"message": "2"}), "rest")
    parked = load.ran(await rest.send(a.session_id, a.token, {"message": "/park"}), "rest")
    failed = await rest.send(a.session_id, parked.token, {"message": "/fail"})
    assert (failed.reason, failed.http_status) == ("turn-failed", 500)
    load.turns["failed", "rest"] += 1
    load.errors["turn-failed"] = 1
    after = load.ran(await rest.send(a.session_id, parked.token, {"message": "3"}), "rest")
    headers = {"Idempotency-Key": KEY, "X-Continuation-Token": after.token}
    path = f"/v1/session/{a.session_id}/message"
    async with httpx.AsyncClient(base_url=load.url) as client:
        keyed = await client.post(path, json={"message": "4"}, headers=headers)
        load.turns["finished", "rest"] += 1
        load.secrets.add(keyed.json()["continuationToken"])
        replayed = await client.post(path, json={"message": "4"}, headers=headers)
        assert replayed.headers["idempotent-replayed"] == "true"
        read = await client.get(f"/v1/session/{a.session_id}", headers=headers)
        assert read.json()["lastOutcome"]["recovered"] is True
    return a.session_id, first.token


async def sse_turns(load: Load) -> None:
    sse = SseClient(load.url)
    b = load.ran(await sse.start({"message": "hello"}), "sse")
    again = load.ran(await sse.send(b.session_id, b.token, {"message": "2"}), "sse")
    failed = await sse.send(b.session_id, again.token, {"message": "/fail"})
    assert (failed.reason, failed.http_status) == ("turn-failed", 200)  # in the stream
    load.turns["failed", "sse"] += 1
    load.refused(await sse.send(b.session_id, b.token, {"message": "x"}), "stale-token")


async def websocket_turns(load: Load) -> None:
    ws = WebSocketClient(load.url)
    c = load.ran(await ws.start({"message": "hello"}), "websocket")
    load.ran(await ws.send(c.session_id, c.token, {"message": "2"}), "websocket")
    stale = await ws.send(c.session_id, c.token, {"message": "3"})
    load.refused(stale, "stale-token", over_http=False)  # an error frame, not a response
    async with websockets.connect(ws.url):
        websocket = frozenset({("transport", "websocket")})

        async def counted() -> bool:
            return samples(await load.scrape())["baton_open_streams", websocket] == 1

        await until(counted, "the open WebSocket is counted")


async def refusals(load: Load, session_id: str, spent: str) -> None:
    rest = BufferedClient(load.url)
    load.refused(await rest.send(session_id, spent, {"message": "x"}), "stale-token")
    load.refused(await rest.send(session_id, None, {"message": "x"}), "missing-token")
    unknown = str(uuid.uuid4())
    load.refused(await rest.send(unknown, spent, {"message": "x"}), "unknown-session")
    start = await rest.start({"message": "x", "continuationToken": spent})
    load.refused(start, "unexpected-token")
    async with httpx.AsyncClient(base_url=load.url) as client:
        bad = await client.post("/v1/session", content=b"[]")
    assert bad.status_code == 400
    load.errors["bad-request"] = 1


async def takeover(load: Load, opened: Database) -> None:
    """A replica claimed the session and died: its lease lapsed, the next turn takes over."""
    rest = BufferedClient(load.url)
    d = load.ran(await rest.start({"message": "hello"}), "rest")
    now = datetime.now(UTC)
    dead = ClaimTurn(
        session_id=SessionId(d.session_id),
        at=now,
        presented=digest_token(d.token),
        input={"message": "lost"},
        lease=Lease("a-dead-replica", now - timedelta(seconds=1)),
    )
    assert isinstance(await opened.store.claim(dead), ClaimGranted)
    load.ran(await rest.send(d.session_id, d.token, {"message": "again"}), "rest")


async def held_sse_turn(load: Load, release: Path) -> None:
    """While a streamed turn is held: one turn in flight, one stream open."""
    async with (
        httpx.AsyncClient(base_url=load.url, timeout=30) as client,
        aconnect_sse(
            client, "POST", "/v1/session", json={"message": "/hold", "until": str(release)}
        ) as source,
    ):
        events = source.aiter_sse()
        while (await anext(events)).event != "record":
            pass
        during = samples(await load.scrape())
        assert during["baton_turns_in_flight", frozenset()] == 1
        assert during["baton_open_streams", frozenset({("transport", "sse")})] == 1
        await asyncio.to_thread(release.touch)
        async for _ in events:
            pass
    load.turns["finished", "sse"] += 1


async def test_metrics_count_what_a_scripted_load_did(
    server: BatonServer, opened: Database, tmp_path: Path
) -> None:
    load = Load(server.url)
    session_id, spent = await buffered_turns(load)
    await sse_turns(load)
    await websocket_turns(load)
    await refusals(load, session_id, spent)
    await takeover(load, opened)
    await held_sse_turn(load, tmp_path / "let-go")

    async def settled() -> bool:
        now = samples(await load.scrape())
        return sum(v for (name, _), v in now.items() if name == "baton_open_streams") == 0

    await until(settled, "every stream and socket of the load has closed")
    scraped = samples(await load.scrape())

    def series(name: str, label: str) -> dict[str, float]:
        return {dict(labels)[label]: v for (n, labels), v in scraped.items() if n == name}

    turns = {
        (dict(labels)["status"], dict(labels)["transport"]): v
        for (name, labels), v in scraped.items()
        if name == "baton_turns_total"
    }
    assert turns == load.turns
    assert series("baton_refusals_total", "reason") == load.refusals
    assert series("baton_errors_total", "reason") == load.errors
    assert series("baton_recoveries_total", "via") == {"read": 1}
    assert scraped["baton_idempotent_replays_total", frozenset()] == 1
    assert scraped["baton_lease_takeovers_total", frozenset()] == 1
    assert scraped["baton_turns_in_flight", frozenset()] == 0
    assert_histograms(scraped, load)
    assert_no_secret_in_labels(scraped, load.secrets)


def assert_histograms(scraped: Scraped, load: Load) -> None:
    for transport in TRANSPORTS:
        ran = sum(n for (_, t), n in load.turns.items() if t == transport)
        labels = frozenset({("transport", transport)})
        assert scraped["baton_turn_duration_seconds_count", labels] == ran
        assert scraped["baton_turn_duration_seconds_sum", labels] > 0
        every = frozenset({("transport", transport), ("le", "+Inf")})
        assert scraped["baton_turn_duration_seconds_bucket", every] == ran

    def operations(name: str) -> dict[str, float]:
        return {dict(labels)["operation"]: v for (n, labels), v in scraped.items() if n == name}

    counts = operations("baton_store_operation_duration_seconds_count")
    committed = sum(n for (status, _), n in load.turns.items() if status in ("finished", "parked"))
    assert counts["commit"] == committed
    assert counts["start"] == 5  # one per session the load started
    assert counts["release"] == 2  # the two failed turns
    assert counts["claim"] > 0
    assert counts["refuse"] > 0
    sums = operations("baton_store_operation_duration_seconds_sum")
    assert all(sums[operation] > 0 for operation in counts if counts[operation])


def assert_no_secret_in_labels(scraped: Scraped, secrets: set[str]) -> None:
    """Label values are words of a fixed vocabulary (or a bucket's bound): no session id,
    no token, nothing a client sent."""
    assert secrets  # the load's session ids and tokens
    values = {value for (_, labels) in scraped for _, value in labels}
    assert values
    for value in values:
        assert LABEL_VALUE.fullmatch(value), value
        assert not UUID.search(value), value
        assert not any(secret in value for secret in secrets), value
