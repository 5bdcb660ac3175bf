"""Recovery through the API alone (PROTOCOL section 6), against real `baton serve` processes
on both backends (two replicas on one PostgreSQL database; two processes on one SQLite file):
a stream cut on one replica resumes on the other; a reply lost in transit is given again to
its keyed retry, and only within the window; a turn is cancelled from the other replica; a
replica stopped mid-turn still ends its stream; and a consumed token, with the whole audit
trail and the database in hand, leads to no later token."""

import asyncio
import json
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import digest_token
from baton.infra.tables import metadata, recovery
from tests.databases import fresh_database
from tests.e2e.operators import baton
from tests.e2e.recovery_clients import (
    DroppingProxy,
    EventStream,
    Message,
    dumped,
    unsealed_tokens,
)
from tests.e2e.server import TEST_HANDLER, BatonServer
from tests.e2e.store_probe import probe, session_events, wait_for_status
from tests.waiting import until

pytestmark = pytest.mark.e2e

ADMIN_KEY = "recovery-e2e-admin-key-0123456789abcdef"  # BATON_ADMIN_KEYS wants 32+ characters
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TOKEN = "X-Continuation-Token"
KEY = "Idempotency-Key"
SHORT_WINDOW = "2"  # seconds: BATON_RECOVERY_WINDOW of the replica the window test uses
WIRE_KINDS = {"record", "committed", "released"}  # the stored events a client reads, with ids
CLIENT_SECONDS = 90.0  # a deadline for one request, never a pause


@dataclass(frozen=True)
class Cluster:
    """Two replicas, A and B, on one database, with the admin API on."""

    database: str
    a: BatonServer
    b: BatonServer
    scratch: Path

    def replica(self, name: str, *args: str) -> BatonServer:
        """One more replica on the same database, for a test to start and stop."""
        return replica(self.database, self.scratch, name, *args)

    def flag(self, name: str) -> Path:
        """A path no file is at yet: a held turn goes on once a test creates it."""
        return self.scratch / f"{name}-{secrets.token_hex(4)}"


def replica(database: str, scratch: Path, name: str, *args: str) -> BatonServer:
    log = scratch / f"{name}.log"
    return BatonServer(database, log, "--handler", TEST_HANDLER, *args)


@pytest.fixture(scope="module")
def cluster(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    scratch = tmp_path_factory.mktemp(f"recovery-{backend}")
    with fresh_database(backend, scratch) as database, pytest.MonkeyPatch.context() as env:
        env.setenv("BATON_ADMIN_KEYS", ADMIN_KEY)
        with replica(database, scratch, "a") as a, replica(database, scratch, "b") as b:
            yield Cluster(database, a, b, scratch)


# --------------------------------------------------------------- requests


async def start(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any] | None = None,
    key: str | None = None,
) -> tuple[str, str]:
    headers = {KEY: key} if key else {}
    reply = await client.post(
        f"{url}/v1/session", json=body or {"message": "hello"}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["sessionId"], reply.json()["continuationToken"]


async def send(
    client: httpx.AsyncClient,
    url: str,
    session_id: str,
    token: str,
    body: dict[str, Any],
    key: str | None = None,
) -> httpx.Response:
    headers = {KEY: key} if key else {}
    return await client.post(
        f"{url}/v1/session/{session_id}/message",
        json={**body, "continuationToken": token},
        headers=headers,
    )


async def next_token(
    client: httpx.AsyncClient, url: str, session_id: str, token: str, body: dict[str, Any]
) -> str:
    reply = await send(client, url, session_id, token, body)
    assert reply.status_code == 200, reply.text
    issued: str = reply.json()["continuationToken"]
    return issued


async def read(client: httpx.AsyncClient, url: str, session_id: str, token: str) -> httpx.Response:
    return await client.get(f"{url}/v1/session/{session_id}", headers={TOKEN: token})


async def read_events(
    client: httpx.AsyncClient, url: str, session_id: str, token: str, after: int = 0
) -> httpx.Response:
    return await client.get(
        f"{url}/v1/session/{session_id}/events", params={"after": after}, headers={TOKEN: token}
    )


def refusal(reply: httpx.Response) -> tuple[int, str | None]:
    return reply.status_code, reply.json().get("reason")


def release(hold: Path, number: int) -> None:
    """Let a `/records` turn journal its record after `number`."""
    Path(f"{hold}.{number}").touch()


def records_turn(token: str, count: int, hold: Path) -> dict[str, Any]:
    return {"message": "/records", "count": count, "until": str(hold), "continuationToken": token}


# --------------------------------------------------------------- the store, as stored


async def stored(engine: AsyncEngine, session_id: str, turn: int) -> list[dict[str, Any]]:
    return [event for event in await session_events(engine, session_id) if event["turn"] == turn]


async def wire_seqs(engine: AsyncEngine, session_id: str, turn: int) -> list[int]:
    """The seqs of a turn's stored events that a client reads: records, outcome, error."""
    events = await stored(engine, session_id, turn)
    return [int(event["seq"]) for event in events if event["kind"] in WIRE_KINDS]


async def count_stored(engine: AsyncEngine, session_id: str, turn: int, kind: str) -> int:
    return [event["kind"] for event in await stored(engine, session_id, turn)].count(kind)


async def seal_row(engine: AsyncEngine, lookup: str) -> dict[str, Any] | None:
    """The recovery row found by `lookup` (the digest of a consumed token)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(recovery).where(recovery.c.lookup == lookup))).first()
    return dict(row._mapping) if row is not None else None


async def sessions_started_with(engine: AsyncEngine, body: dict[str, Any]) -> set[str]:
    async with engine.connect() as conn:
        started = (await conn.execute(select(metadata.tables["events"]))).mappings().all()
    found = set()
    for event in started:
        data = json.loads(event["data"]) if isinstance(event["data"], str) else event["data"]
        if event["kind"] == "started" and data.get("input") == body:
            found.add(str(event["session_id"]))
    return found


async def database_dump(engine: AsyncEngine) -> str:
    """Every row of every table: read access to the whole database."""
    rows: dict[str, list[dict[str, Any]]] = {}
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows[table.name] = [dict(row) for row in (await conn.execute(select(table))).mappings()]
    return dumped(rows)


# --------------------------------------------------------------- 1. resumable streams


@pytest.mark.parametrize("received", [1, 0], ids=["after-a-record", "before-any-record"])
async def test_a_stream_cut_on_one_replica_resumes_on_the_other(
    cluster: Cluster, received: int
) -> None:
    """A turn streamed from replica A, cut by its client after `received` records (0: after
    the priming message only), resumed on replica B with Last-Event-ID and the token the turn
    was started with: exactly the records it missed, those stored while it was away and one
    stored while it follows, then the outcome with the token the turn issued."""
    hold = cluster.flag("records")
    async with (
        httpx.AsyncClient(timeout=CLIENT_SECONDS) as client,
        probe(cluster.database) as engine,
    ):
        session_id, token = await start(client, cluster.a.url)
        path = f"/v1/session/{session_id}/message"
        async with EventStream(
            cluster.a.url, "POST", path, json_body=records_turn(token, 4, hold)
        ) as cut:
            assert cut.response.status_code == 200
            assert cut.response.headers["content-location"] == f"/v1/session/{session_id}/events"
            priming = await cut.next()
            got = [await cut.next() for _ in range(received)]
        # The connection is closed: the turn runs on, and stores what the client misses.
        assert priming.id is not None
        assert (priming.event, priming.data) == (None, None)
        assert [message.event for message in got] == ["record"] * received
        release(hold, 1)
        release(hold, 2)
        await until(lambda: _records_stored(engine, session_id, 3), "three records are stored", 60)

        last_seen = got[-1].id if got else priming.id
        resume = {"Last-Event-ID": str(last_seen), TOKEN: token}
        events_path = f"/v1/session/{session_id}/events"
        async with EventStream(cluster.b.url, "GET", events_path, headers=resume) as resumed:
            assert resumed.response.status_code == 200
            primed = await resumed.next()
            missed = [await resumed.next() for _ in range(3 - received)]  # stored while away
            release(hold, 3)
            missed.append(await resumed.next())  # stored on A while B follows
            release(hold, 4)
            ending = await resumed.rest()
        expected_seqs = await wire_seqs(engine, session_id, 2)

        assert primed == Message(last_seen, None, None)
        assert ending.cut is None  # B ended the stream itself, after the outcome
        events = [*missed, *ending.messages]
        assert [message.event for message in events] == ["record"] * (4 - received) + ["outcome"]
        assert [message.data["record"] for message in events[:-1] if message.data] == [
            {"record": number} for number in range(received + 1, 5)
        ]
        assert all(message.data and message.data["seq"] == message.id for message in events)
        # Every stored event of the turn, once, in order: none lost, none repeated.
        assert [message.id for message in [*got, *events]] == expected_seqs
        outcome = events[-1].data
        assert outcome is not None
        assert (outcome["status"], outcome["turn"], outcome["output"]) == (
            "finished",
            2,
            {"records": 4},
        )
        assert outcome.get("recovered") is True, outcome
        assert "continuationToken" in outcome, outcome
        carried_on = await send(
            client, cluster.b.url, session_id, outcome["continuationToken"], {"message": "on"}
        )
        assert carried_on.status_code == 200, carried_on.text
        assert carried_on.json()["turn"] == 3


async def _records_stored(engine: AsyncEngine, session_id: str, count: int) -> bool:
    return await count_stored(engine, session_id, 2, "record") >= count


async def test_a_stream_resumed_after_its_turn_committed_recovers_the_token(
    cluster: Cluster,
) -> None:
    """A client that comes back only after its turn committed: its token is consumed, and
    reading with it (from the priming message's id) gives every record and the outcome with
    the token the turn issued, as JSON and as a stream that ends (the session is idle)."""
    hold = cluster.flag("records")
    async with (
        httpx.AsyncClient(timeout=CLIENT_SECONDS) as client,
        probe(cluster.database) as engine,
    ):
        session_id, token = await start(client, cluster.a.url)
        path = f"/v1/session/{session_id}/message"
        async with EventStream(
            cluster.a.url, "POST", path, json_body=records_turn(token, 2, hold)
        ) as cut:
            priming = await cut.next()
        assert priming.id is not None
        release(hold, 1)
        release(hold, 2)

        async def committed() -> bool:
            return await count_stored(engine, session_id, 2, "committed") == 1

        await until(committed, "the turn commits", 60)
        expected_seqs = await wire_seqs(engine, session_id, 2)

        listed = await read_events(client, cluster.b.url, session_id, token, after=priming.id)
        assert listed.status_code == 200, listed.text
        headers = {"Last-Event-ID": str(priming.id), TOKEN: token}
        events_path = f"/v1/session/{session_id}/events"
        async with EventStream(cluster.b.url, "GET", events_path, headers=headers) as resumed:
            ending = await resumed.rest()

        objects = listed.json()
        assert [event["type"] for event in objects] == ["record", "record", "outcome"]
        assert [event["seq"] for event in objects] == expected_seqs
        assert ending.cut is None
        assert ending.messages[0] == Message(priming.id, None, None)
        assert [message.data for message in ending.messages[1:]] == objects
        assert [message.id for message in ending.messages[1:]] == expected_seqs
        outcome = objects[-1]
        assert outcome["recovered"] is True
        issued = outcome["continuationToken"]
        assert refusal(await send(client, cluster.a.url, session_id, token, {"message": "x"})) == (
            409,
            "stale-token",
        )  # the token the turn consumed reads, and does nothing else
        assert (
            await send(client, cluster.a.url, session_id, issued, {"message": "on"})
        ).status_code == 200


# --------------------------------------------------------------- 2 and 3. lost replies


async def test_a_reply_lost_in_transit_is_given_again_to_its_keyed_retry(cluster: Cluster) -> None:
    """A buffered continue through a proxy that loses the reply after the server sent it all.
    The retry (on the other replica) with the same key, token and input gets the very same
    body, marked replayed; without the key it is stale-token; with the key and another input
    a mismatch. Once the next turn is claimed, the consumed token reads nothing and its
    recovery row is gone."""
    key = f"continue-{secrets.token_urlsafe(16)}"
    body = {"message": "kept"}
    async with (
        httpx.AsyncClient(timeout=CLIENT_SECONDS) as client,
        probe(cluster.database) as engine,
        DroppingProxy(cluster.a.port) as proxy,
    ):
        session_id, token = await start(client, cluster.a.url)
        with pytest.raises(httpx.TransportError):
            await send(client, proxy.url, session_id, token, body, key)
        (lost,) = proxy.dropped
        assert lost.status == 200, lost.body
        issued = lost.json()["continuationToken"]

        retried = await send(client, cluster.b.url, session_id, token, body, key)
        assert retried.status_code == 200, retried.text
        assert retried.headers["idempotent-replayed"] == "true"
        assert retried.content == lost.body  # byte for byte the reply that was lost
        again = await send(client, cluster.a.url, session_id, token, body, key)
        assert (again.status_code, again.content) == (200, lost.body)

        unkeyed = await send(client, cluster.b.url, session_id, token, body)
        assert refusal(unkeyed) == (409, "stale-token")
        assert unkeyed.headers["x-should-retry"] == "false"
        mismatched = await send(client, cluster.b.url, session_id, token, {"message": "other"}, key)
        assert refusal(mismatched) == (422, "idempotency-mismatch")
        assert mismatched.headers["x-should-retry"] == "false"

        # Within the window: the consumed token reads the turn and recovers its token.
        seal = await seal_row(engine, digest_token(token))
        assert seal is not None
        assert (str(seal["session_id"]), seal["turn"]) == (session_id, 2)
        recovered = await read(client, cluster.b.url, session_id, token)
        assert recovered.status_code == 200, recovered.text
        assert recovered.json()["lastOutcome"]["continuationToken"] == issued
        assert recovered.json()["lastOutcome"]["recovered"] is True

        # Turn n+1 is claimed (and held in flight): the consumed token reads nothing more.
        hold = cluster.flag("next-turn")
        following = asyncio.create_task(
            send(
                client, cluster.a.url, session_id, issued, {"message": "/hold", "until": str(hold)}
            )
        )
        await wait_for_status(engine, session_id, "in-flight")
        try:
            await _consumed_token_reads_nothing(client, cluster, session_id, token, body, key)
            assert await seal_row(engine, digest_token(token)) is None
        finally:
            hold.touch()
        assert (await following).status_code == 200
        await _consumed_token_reads_nothing(client, cluster, session_id, token, body, key)
        assert await seal_row(engine, digest_token(token)) is None


async def _consumed_token_reads_nothing(
    client: httpx.AsyncClient,
    cluster: Cluster,
    session_id: str,
    token: str,
    body: dict[str, Any],
    key: str,
) -> None:
    for url in (cluster.a.url, cluster.b.url):
        assert refusal(await read(client, url, session_id, token)) == (409, "stale-token")
        assert refusal(await read_events(client, url, session_id, token)) == (409, "stale-token")
        replayed = await send(client, url, session_id, token, body, key)
        assert refusal(replayed) == (409, "stale-token")


async def test_past_the_window_a_consumed_token_reads_nothing_and_its_seal_is_erased(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a replica whose recovery window is short, a commit whose reply was lost: once the
    window has passed the sweep erases its recovery row, and the consumed token reads
    nothing, keyed retry or not; no later turn was claimed, so the window alone did it."""
    monkeypatch.setenv("BATON_RECOVERY_WINDOW", SHORT_WINDOW)
    key = f"window-{secrets.token_urlsafe(16)}"
    body = {"message": "lost"}
    with cluster.replica("short-window") as short:
        async with (
            httpx.AsyncClient(timeout=CLIENT_SECONDS) as client,
            probe(cluster.database) as engine,
            DroppingProxy(short.port) as proxy,
        ):
            session_id, token = await start(client, short.url)
            with pytest.raises(httpx.TransportError):
                await send(client, proxy.url, session_id, token, body, key)
            (lost,) = proxy.dropped
            assert lost.status == 200, lost.body
            assert await count_stored(engine, session_id, 2, "committed") == 1  # it landed

            async def erased() -> bool:
                return await seal_row(engine, digest_token(token)) is None

            await until(erased, "the sweep erases the seal past the window", 60)
            assert refusal(await read(client, short.url, session_id, token)) == (409, "stale-token")
            assert refusal(await read_events(client, short.url, session_id, token)) == (
                409,
                "stale-token",
            )
            replayed = await send(client, short.url, session_id, token, body, key)
            assert refusal(replayed) == (409, "stale-token")
            # The token the lost reply carried is the current one; no later turn was claimed.
            current = await read(client, short.url, session_id, lost.json()["continuationToken"])
            assert current.status_code == 200, current.text
            assert (current.json()["turn"], current.json()["status"]) == (2, "idle")


async def test_a_keyed_start_retried_after_a_lost_reply_is_one_session_and_one_first_token(
    cluster: Cluster,
) -> None:
    key = secrets.token_urlsafe(24)  # at least 22 characters: a start's only secret
    body = {"message": f"start {secrets.token_hex(8)}"}
    async with (
        httpx.AsyncClient(timeout=CLIENT_SECONDS) as client,
        probe(cluster.database) as engine,
        DroppingProxy(cluster.a.port) as proxy,
    ):
        with pytest.raises(httpx.TransportError):
            await client.post(f"{proxy.url}/v1/session", json=body, headers={KEY: key})
        (lost,) = proxy.dropped
        assert lost.status == 200, lost.body
        first = lost.json()

        for url in (cluster.b.url, cluster.a.url):
            retried = await client.post(f"{url}/v1/session", json=body, headers={KEY: key})
            assert retried.status_code == 200, retried.text
            assert retried.headers["idempotent-replayed"] == "true"
            assert retried.content == lost.body  # the same session, the same first token
        assert await sessions_started_with(engine, body) == {first["sessionId"]}

        session_id, token = first["sessionId"], first["continuationToken"]
        assert (
            await send(client, cluster.b.url, session_id, token, {"message": "on"})
        ).status_code == 200
        late = await client.post(f"{cluster.a.url}/v1/session", json=body, headers={KEY: key})
        assert refusal(late) == (409, "stale-token")  # the session moved on: never a second one
        assert await sessions_started_with(engine, body) == {first["sessionId"]}


# --------------------------------------------------------------- 4. cancelling


async def test_a_turn_cancelled_from_the_other_replica_stops_and_keeps_its_token(
    cluster: Cluster,
) -> None:
    """A long turn on A, cancelled through B: on PostgreSQL the request reaches A by NOTIFY,
    on SQLite A finds it when it next asks the store. The turn's own request gets 409
    cancelled, the cancel call 200 within its wait, and the token carries on."""
    async with (
        httpx.AsyncClient(timeout=CLIENT_SECONDS) as client,
        probe(cluster.database) as engine,
    ):
        session_id, token = await start(client, cluster.a.url)
        sleeping = asyncio.create_task(
            send(client, cluster.a.url, session_id, token, {"message": "/sleep", "seconds": 60})
        )
        await wait_for_status(engine, session_id, "in-flight")
        cancelled = await client.post(
            f"{cluster.b.url}/v1/session/{session_id}/cancel",
            params={"wait": 30},
            headers={TOKEN: token},
        )
        assert cancelled.status_code == 200, cancelled.text  # stopped within its wait
        assert cancelled.json()["status"] == "idle"
        stopped = await sleeping
        assert refusal(stopped) == (409, "cancelled")
        carried_on = await send(client, cluster.b.url, session_id, token, {"message": "after"})
        assert carried_on.status_code == 200, carried_on.text
        assert carried_on.json()["turn"] == 2
        events = await stored(engine, session_id, 2)

    kinds = [event["kind"] for event in events if event["kind"] != "renewed"]
    assert kinds[:4] == ["claimed", "record", "cancel-requested", "released"]
    assert kinds[-1] == "committed"
    by_kind = {event["kind"]: event for event in reversed(events)}  # the first of each kind
    asked, released = by_kind["cancel-requested"], by_kind["released"]
    assert asked["seq"] is not None
    assert released["data"]["cause"] == "cancelled"


# --------------------------------------------------------------- 5. the leak, closed


async def audit_trail(cluster: Cluster, client: httpx.AsyncClient, session_id: str) -> list[str]:
    """Everything an auditor reads: the admin API (the session's events, the session list,
    the global feed), `baton history --json` and `baton export`."""
    admin = cluster.a.url + "/v1/admin"
    texts = [(await client.get(f"{admin}/sessions/{session_id}/events", headers=ADMIN)).text]
    for listing, items in (("sessions", "sessions"), ("events", "events")):
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 500}
            if cursor:
                params["after"] = cursor
            page = await client.get(f"{admin}/{listing}", params=params, headers=ADMIN)
            assert page.status_code == 200, page.text
            texts.append(page.text)
            if not page.json()[items] or page.json()["next"] in {None, cursor}:
                break
            cursor = page.json()["next"]
    history, exported = await asyncio.gather(
        asyncio.to_thread(baton, "history", session_id, "--json", database=cluster.database),
        asyncio.to_thread(baton, "export", database=cluster.database),
    )
    for ran in (history, exported):
        assert ran.returncode == 0, ran.stderr
        texts.append(ran.stdout)
    assert session_id in texts[0]
    assert session_id in history.stdout
    assert session_id in exported.stdout
    return texts


async def _old_token_yields_nothing(
    client: httpx.AsyncClient, cluster: Cluster, session_id: str, old: str, key: str
) -> list[str]:
    """Every read the API offers, with the old token: each a stale-token refusal."""
    answers = [
        await read(client, cluster.a.url, session_id, old),
        await read_events(client, cluster.b.url, session_id, old),
        await client.get(
            f"{cluster.a.url}/v1/session/{session_id}/events",
            headers={TOKEN: old, "Accept": "text/event-stream", "Last-Event-ID": "1"},
        ),
        await send(client, cluster.b.url, session_id, old, {"message": "two"}),
        # the start retried with its key: the session has moved on
        await client.post(
            f"{cluster.a.url}/v1/session", json={"message": "hello"}, headers={KEY: key}
        ),
    ]
    for answer in answers:
        assert refusal(answer) == (409, "stale-token"), answer.text
    texts = [answer.text for answer in answers]
    async with websockets.connect(cluster.b.url.replace("http", "ws") + "/v1/ws") as socket:
        for frame in (
            {"sessionId": session_id, "continuationToken": old, "after": 0},
            {"sessionId": session_id, "continuationToken": old, "message": "two"},
        ):
            await socket.send(json.dumps(frame))
            async with asyncio.timeout(CLIENT_SECONDS):
                frame_text = str(await socket.recv())
            refused = json.loads(frame_text)
            assert (refused["type"], refused["reason"]) == ("error", "stale-token")
            texts.append(frame_text)
    return texts


async def test_an_old_token_with_the_whole_audit_trail_leads_to_no_later_token(
    cluster: Cluster,
) -> None:
    """A five-turn session. Whoever holds turn 1's token (and the start's key), admin access,
    the CLI's history and export, and every row of the database: nothing in all of it,
    unsealed every way it could be, is one of the tokens of turns 2 to 5; and once turn 3
    is claimed no API read with turn 1's token yields any token."""
    key = secrets.token_urlsafe(24)
    async with (
        httpx.AsyncClient(timeout=CLIENT_SECONDS) as client,
        probe(cluster.database) as engine,
    ):
        session_id, first = await start(client, cluster.a.url, key=key)
        tokens = [
            first,
            await next_token(client, cluster.b.url, session_id, first, {"message": "2"}),
        ]
        held = [first, key]

        # Within the window turn 1's token recovers turn 2's, through the API, as it should;
        # the database keeps it sealed (the search finds it there: it would find a leak),
        # and no auditor's view shows the seal.
        recovered = await read(client, cluster.a.url, session_id, first)
        assert recovered.json()["lastOutcome"]["continuationToken"] == tokens[1]
        assert unsealed_tokens([await database_dump(engine)], held, tokens[1:]) == {tokens[1]}
        audited = await audit_trail(cluster, client, session_id)
        assert unsealed_tokens(audited, held, tokens[1:]) == set()
        assert [token for token in tokens if any(token in text for text in audited)] == []

        hold = cluster.flag("turn-3")
        third = asyncio.create_task(
            send(
                client,
                cluster.a.url,
                session_id,
                tokens[1],
                {"message": "/hold", "until": str(hold)},
            )
        )
        await wait_for_status(engine, session_id, "in-flight")
        try:
            answered = await _old_token_yields_nothing(client, cluster, session_id, first, key)
        finally:
            hold.touch()
        reply = await third
        assert reply.status_code == 200, reply.text
        tokens.append(reply.json()["continuationToken"])
        for url in (cluster.b.url, cluster.a.url):
            tokens.append(await next_token(client, url, session_id, tokens[-1], {"message": "n"}))
        assert len(set(tokens)) == 5
        answered += await _old_token_yields_nothing(client, cluster, session_id, first, key)

        everything = [
            *answered,
            *await audit_trail(cluster, client, session_id),
            await database_dump(engine),
        ]
    later = tokens[1:]
    assert unsealed_tokens(everything, held, later) == set()
    assert [token for token in tokens if any(token in text for text in everything)] == []


# --------------------------------------------------------------- 6. no lost end


async def test_a_replica_stopped_mid_turn_ends_its_stream_and_the_token_carries_on(
    cluster: Cluster,
) -> None:
    """SIGTERM to a replica whose turn runs past the grace period: the turn's stream ends
    with an error event, not silence; any replica then tells the client, from the stored
    events, that the turn was released; and its token carries on."""
    doomed = cluster.replica("doomed", "--shutdown-grace", "1").start()
    try:
        async with httpx.AsyncClient(timeout=CLIENT_SECONDS) as client:
            session_id, token = await start(client, cluster.a.url)
            path = f"/v1/session/{session_id}/message"
            turn = {"message": "/sleep", "seconds": 30, "continuationToken": token}
            async with EventStream(doomed.url, "POST", path, json_body=turn) as stream:
                priming = await stream.next()
                record = await stream.next()  # the turn runs
                assert doomed.process is not None
                doomed.process.send_signal(signal.SIGTERM)
                ending = await stream.rest()
            exit_code = await asyncio.to_thread(doomed.process.wait, 60)

            assert priming.id is not None
            assert record.event == "record"
            learned = await read_events(client, cluster.a.url, session_id, token, priming.id)
            carried_on = await send(client, cluster.b.url, session_id, token, {"message": "again"})
    finally:
        doomed.stop()

    # What the client learns afterwards, from another replica (checked first: it holds even
    # when the stream itself went wrong, and says so separately)...
    assert exit_code == 0, doomed.log()
    assert learned.status_code == 200, learned.text
    assert [
        (event["type"], event.get("void"), event.get("reason")) for event in learned.json()
    ] == [("record", True, None), ("error", None, "unavailable")]
    assert carried_on.status_code == 200, carried_on.text
    assert carried_on.json()["turn"] == 2
    # ...and the stream's own end: an error event, then the end of the body; not a cut.
    assert ending.cut is None, f"the stream was cut, not ended: {ending.cut!r}"
    assert [message.event for message in ending.messages] == ["error"]
    assert ending.messages[0].data is not None
    assert ending.messages[0].data["reason"] == "unavailable"
