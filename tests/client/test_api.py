"""baton-client against a real `baton serve`: the session API, token rotation, the token
store, and one exception per refusal reason."""

import asyncio
import json
import os
import stat
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from baton_client import (
    AsyncClient,
    AsyncSession,
    BadRequest,
    BatonError,
    Cancelled,
    Client,
    Closed,
    Delta,
    FileTokenStore,
    InFlight,
    MemoryTokenStore,
    NoSession,
    Outcome,
    Record,
    RetryPolicy,
    SavedSession,
    Session,
    StaleToken,
    TooLarge,
    TurnError,
    TurnFailed,
    UnexpectedToken,
    UnknownSession,
)
from baton_client.errors import ERRORS, error_for
from baton_client.models import fingerprint

from tests.client.conftest import committed_turns
from tests.e2e.server import BatonServer
from tests.waiting import until

pytestmark = pytest.mark.e2e

FAST = RetryPolicy(base_delay=0.01, max_delay=0.2, deadline=20)
ALLOWED_KEYS = {"sessionId", "continuationToken", "pendingKey", "pendingFingerprint"}


def running(session: AsyncSession) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await session.read()).status == "in-flight"

    return check


def saved_token(session: AsyncSession | Session) -> str | None:
    return session.continuation_token


async def test_start_send_stream_read_events_and_close(server: BatonServer) -> None:
    async with AsyncClient(server.url, retry=FAST) as client:
        session = await client.start({"message": "hello"})
        first = session.outcome
        assert first is not None
        assert (first.status, first.turn, first.output) == (
            "finished",
            1,
            {"reply": "You said: hello", "turn": 1},
        )
        assert first.records == ({"role": "user", "text": "hello"},)
        tokens = [session.continuation_token]

        second = await session.send({"message": "again"})
        assert (second.turn, second.output["reply"]) == (2, "You said: again")
        tokens.append(session.continuation_token)

        streamed = [event async for event in session.stream({"message": "one two"})]
        assert isinstance(streamed[0], Record)
        assert streamed[0].record == {"role": "user", "text": "one two"}
        assert "".join(e.text for e in streamed if isinstance(e, Delta)) == "You said: one two"
        outcome = streamed[-1]
        assert isinstance(outcome, Outcome)
        assert (outcome.turn, outcome.records) == (3, (streamed[0].record,))
        tokens.append(session.continuation_token)
        assert len(set(tokens)) == 3  # rotated on every committed turn

        parked = await session.send({"message": "/park"})
        assert (parked.status, parked.wait) == ("parked", {"for": "message"})

        view = await session.read()
        assert (view.status, view.turn, view.last_outcome["status"]) == ("idle", 4, "parked")

        stored = await session.events()
        assert [type(e).__name__ for e in stored] == ["Record", "Outcome"] * 4
        assert [e.seq for e in stored] == sorted(e.seq for e in stored)
        kept = stored[5]  # the stored outcome is the one the stream gave
        assert isinstance(kept, Outcome)
        assert (kept.seq, kept.turn, kept.output) == (outcome.seq, 3, outcome.output)
        later = await session.events(after=stored[3].seq)
        assert later == stored[4:]
        followed = [event async for event in session.follow(after=stored[3].seq)]
        assert followed == later  # idle: the replay, then the end

        await session.close()
        with pytest.raises(Closed):
            await session.send({"message": "after close"})
        assert await committed_turns(server.database_url, str(session.session_id)) == [1, 2, 3, 4]


async def test_a_failed_turn_keeps_the_token_and_errors_carry_reason_status_message(
    server: BatonServer,
) -> None:
    async with AsyncClient(server.url, retry=FAST) as client:
        session = await client.start({"message": "hi"})
        token = session.continuation_token
        with pytest.raises(TurnFailed) as failed:
            await session.send({"message": "/fail"})
        assert (failed.value.reason, failed.value.status_code) == ("turn-failed", 500)
        assert failed.value.message == "turn failed: the demo handler was asked to fail"
        with pytest.raises(TurnFailed) as in_band:  # over SSE: an error event
            async for _ in session.stream({"message": "/fail"}):
                pass
        assert in_band.value.message == failed.value.message
        assert (session.continuation_token, session.pending) == (token, False)
        assert (await session.send({"message": "still here"})).turn == 2
        assert [type(e) for e in await session.events()].count(TurnError) == 2

        with pytest.raises(BadRequest) as bad:
            await session.events(after=-1)
        assert (bad.value.reason, bad.value.status_code) == ("bad-request", 400)
        assert "after must be a seq" in bad.value.message
        with pytest.raises(TooLarge) as large:
            await session.send({"message": "x" * (2 * 1024 * 1024)})
        assert (large.value.reason, large.value.status_code) == ("too-large", 413)
        with pytest.raises(UnexpectedToken) as unexpected:
            await client.start({"message": "m", "continuationToken": "not on a start"})
        assert unexpected.value.status_code == 400
        assert unexpected.value.message == "present no continuationToken to start a session"

        nobody = client.resume(MemoryTokenStore(SavedSession(str(uuid.uuid4()), "forged")))
        with pytest.raises(UnknownSession) as unknown:
            await nobody.send({"message": "m"})
        assert (unknown.value.reason, unknown.value.status_code) == ("unknown-session", 404)
        with pytest.raises(NoSession):
            client.resume(MemoryTokenStore())


def test_every_reason_has_its_class() -> None:
    for reason, cls in ERRORS.items():
        error = error_for(reason, "the message", 418)
        assert type(error) is cls
        assert (error.reason, error.status_code, error.message) == (reason, 418, "the message")
    other = error_for("new-reason", "m")
    assert (type(other), other.reason) == (BatonError, "new-reason")


async def test_stale_token_is_raised_and_never_retried_without_a_lost_reply(
    server: BatonServer,
) -> None:
    async with AsyncClient(server.url, retry=FAST) as client:
        ours = await client.start({"quick": "one"})
        saved = SavedSession(ours.session_id, ours.continuation_token)
        other = client.resume(MemoryTokenStore(saved))  # a second holder of the same token
        await other.send({"quick": "two"})
        before = client.stats.as_dict()
        with pytest.raises(StaleToken) as stale:
            await ours.send({"quick": "three"})
        assert (stale.value.status_code, stale.value.reason) == (409, "stale-token")
        assert stale.value.message == "stale or invalid continuationToken"
        assert client.stats.as_dict() == before  # no retry, no recovery attempted
        assert await committed_turns(server.database_url, str(ours.session_id)) == [1, 2]


async def hold_turn(server: BatonServer, session_id: str, token: str, flag: Path) -> int:
    """Another holder of the token runs a turn held until `flag` exists: its status."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        reply = await http.post(
            f"/v1/session/{session_id}/message",
            json={"message": "/hold", "until": str(flag)},
            headers={"X-Continuation-Token": token},
        )
    return reply.status_code


async def test_in_flight_is_waited_out_up_to_a_bound(server: BatonServer, tmp_path: Path) -> None:
    policy = RetryPolicy(base_delay=0.01, in_flight_wait=1.5, deadline=20)
    async with AsyncClient(server.url, retry=policy) as client:
        session = await client.start({"quick": "one"})
        flag = tmp_path / "release"
        holder = asyncio.ensure_future(
            hold_turn(server, str(session.session_id), str(session.continuation_token), flag)
        )
        await until(running(session), "the held turn runs")
        started = asyncio.get_running_loop().time()
        with pytest.raises(InFlight) as in_flight:
            await session.send({"quick": "two"})
        waited = asyncio.get_running_loop().time() - started
        assert 0.9 < waited < 3, waited
        assert (in_flight.value.status_code, in_flight.value.retry_after) == (409, 1.0)
        assert client.stats.in_flight_waits >= 1
        flag.touch()
        assert await holder == 200
        # The other holder's turn consumed the token: stale, and this client lost no reply.
        with pytest.raises(StaleToken):
            await session.send({"quick": "two"})


async def test_cancel_stops_the_running_turn(server: BatonServer, tmp_path: Path) -> None:
    async with AsyncClient(server.url, retry=FAST) as client:
        session = await client.start({"quick": "one"})
        token = session.continuation_token
        events: list[object] = []

        async def held() -> None:
            async for event in session.stream({"message": "/hold", "until": str(tmp_path / "x")}):
                events.append(event)

        turn = asyncio.ensure_future(held())
        await until(lambda: bool(events), "the held turn journals")
        view = await session.cancel(wait=10)
        assert view.status == "idle"
        with pytest.raises(Cancelled) as cancelled:
            await turn
        assert (cancelled.value.reason, cancelled.value.status_code) == ("cancelled", 409)
        assert session.continuation_token == token  # nothing committed
        assert (await session.send({"quick": "two"})).turn == 2
        assert (await session.cancel(wait=0)).status == "idle"  # nothing running: a no-op


def test_the_sync_client(server: BatonServer, tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "session.json")
    with Client(server.url, retry=FAST) as client:
        session = client.start({"message": "sync"}, store=store)
        assert session.turn == 1
        assert session.send({"quick": "two"}).output == {"echo": "two", "turn": 2}
        events = list(session.stream({"message": "three words"}))
        assert session.outcome == events[-1]
        assert session.turn == 3
        assert any(isinstance(e, Delta) for e in events)
        first_two = session.stream({"quick": "four"})
        assert isinstance(next(first_two), Record)
        first_two.close()  # abandoned after its record: the turn still commits
        assert session.pending
        assert session.send({"quick": "five"}).turn == 5  # the read found turn 4
        assert client.stats.recoveries["read"] == 1
        assert session.read().turn == 5
        assert [e.seq for e in session.follow(after=0)] == [e.seq for e in session.events()]
        saved = json.loads(store.path.read_text())
        assert saved == {
            "sessionId": session.session_id,
            "continuationToken": session.continuation_token,
        }
        session.close()
        assert not store.path.exists()


async def test_the_token_file_holds_no_more_than_allowed(
    server: BatonServer, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "session.json"
    async with AsyncClient(server.url, retry=FAST) as client:
        session = await client.start({"quick": "one"}, store=FileTokenStore(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert set(json.loads(path.read_text())) == {"sessionId", "continuationToken"}
        flag = tmp_path / "release"
        turn = asyncio.ensure_future(session.send({"message": "/hold", "until": str(flag)}))
        await until(running(session), "the held turn runs")
        during = json.loads(path.read_text())  # a turn under way: its key is saved
        assert set(during) == ALLOWED_KEYS
        assert during["continuationToken"] == session.continuation_token
        assert len(during["pendingKey"]) >= 22
        flag.touch()
        await turn
        after = json.loads(path.read_text())
        assert after == {
            "sessionId": session.session_id,
            "continuationToken": after["continuationToken"],
        }
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == ["session.json"]  # no temp left


async def test_a_pending_turn_is_replayed_or_read_after_a_crash(
    server: BatonServer, tmp_path: Path
) -> None:
    """A process died after sending a turn (the key was saved) but before saving its outcome;
    the turn committed. The same input again is replayed; other input first reads."""
    async with AsyncClient(server.url, retry=FAST) as client:
        path = tmp_path / "session.json"
        session = await client.start({"quick": "one"}, store=FileTokenStore(path))
        session_id, token = str(session.session_id), str(session.continuation_token)
        for turn, replay in ((2, True), (3, False)):
            key = f"crashed-turn-{turn}-{uuid.uuid4()}"
            crashed = {"quick": f"turn {turn}"}
            async with httpx.AsyncClient(base_url=server.url) as http:  # what the dead process sent
                reply = await http.post(
                    f"/v1/session/{session_id}/message",
                    json=crashed,
                    headers={"X-Continuation-Token": token, "Idempotency-Key": key},
                )
            assert reply.status_code == 200
            saved = SavedSession(session_id, token, key, fingerprint(crashed))
            FileTokenStore(path).save(saved)
            restarted = client.resume(FileTokenStore(path))
            outcome = await restarted.send(crashed if replay else {"quick": "new input"})
            if replay:
                assert (outcome.replayed, outcome.turn) == (True, turn)
            else:
                assert (outcome.replayed, outcome.turn) == (False, turn + 1)
            token = str(restarted.continuation_token)
        assert client.stats.recoveries == {"replay": 1, "read": 1}
        assert await committed_turns(server.database_url, session_id) == [1, 2, 3, 4]
