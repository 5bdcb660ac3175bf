"""Bad input to the recovery endpoints (PROTOCOL section 6), in-process: seqs that are not
seqs, Idempotency-Keys the protocol does not accept, cancel waits out of range; and the
races: repeated cancels, cancels racing the turn's end, keyed starts retried at once."""

import asyncio
import secrets
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.follow import Following
from baton.domain.ports import StoreUnavailable
from baton.infra.tables import events, sessions
from tests.api.conftest import HeldTurns
from tests.api.protocol import event_kinds, events_of, refusal_of, send, start

TOKEN_HEADER = "X-Continuation-Token"
KEY_HEADER = "Idempotency-Key"
MAX_SEQ = 2**31 - 1
MIB = 1024 * 1024
BAD_KEY = "an Idempotency-Key is 1 to 255 visible ASCII characters"
SHORT_START_KEY = (
    "an Idempotency-Key on a start must be at least 22 characters: "
    "it is the only secret that recovers the first token"
)
CANCELLED = (409, "cancelled", "the turn was cancelled by the holder of its token")


def new_key(length: int = 32) -> str:
    return secrets.token_urlsafe(length)[:length]


async def count_sessions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(sessions))).scalar_one())


async def count_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


def events_url(session: dict[str, Any]) -> str:
    return f"/v1/session/{session['sessionId']}/events"


def cancel_url(session: dict[str, Any], query: str = "") -> str:
    return f"/v1/session/{session['sessionId']}/cancel{query}"


def token_of(session: dict[str, Any]) -> dict[str, str]:
    return {TOKEN_HEADER: session["continuationToken"]}


async def two_turns(client: AsyncClient) -> dict[str, Any]:
    """A session after two committed turns (seqs 1 to 8: started, record, committed;
    claimed, record, committed), as its last reply."""
    session = await start(client)
    reply = await send(client, session["sessionId"], session["continuationToken"])
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


# ---------------------------------------------------------------- ?after= and Last-Event-ID

NOT_SEQS = ["-1", "abc", "1.5", "1e3", "0x10", "+1", "1,2", str(MAX_SEQ + 1), "9" * 40]
FULLWIDTH_TWO = "\uff12"  # a digit to Unicode, not to a seq


@pytest.mark.parametrize("value", [*NOT_SEQS, " 1", "1 ", FULLWIDTH_TWO])
async def test_an_after_that_is_not_a_seq_is_a_bad_request(
    client: AsyncClient, engine: AsyncEngine, value: str
) -> None:
    session = await two_turns(client)
    stored = await count_events(engine)
    response = await client.get(
        events_url(session), params={"after": value}, headers=token_of(session)
    )
    assert refusal_of(response) == (
        400,
        "bad-request",
        f"after must be a seq, a whole number from 0 to {MAX_SEQ}",
    )
    assert await count_events(engine) == stored  # a bad request is never stored


@pytest.mark.parametrize("value", NOT_SEQS)
async def test_a_last_event_id_that_is_not_a_seq_is_a_bad_request(
    client: AsyncClient, value: str
) -> None:
    session = await two_turns(client)
    headers = {**token_of(session), "Last-Event-ID": value}
    response = await client.get(events_url(session), params={"after": "1"}, headers=headers)
    assert refusal_of(response) == (
        400,
        "bad-request",
        f"Last-Event-ID must be a seq, a whole number from 0 to {MAX_SEQ}",
    )


async def test_a_bad_after_is_refused_even_when_last_event_id_overrides_it(
    client: AsyncClient,
) -> None:
    """Schemathesis found it: a malformed parameter must not pass because a header wins."""
    session = await two_turns(client)
    headers = {**token_of(session), "Last-Event-ID": "5"}
    response = await client.get(events_url(session), params={"after": "x"}, headers=headers)
    assert refusal_of(response) == (
        400,
        "bad-request",
        f"after must be a seq, a whole number from 0 to {MAX_SEQ}",
    )


async def test_a_bad_after_is_refused_before_the_token_is_looked_at(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    session = await two_turns(client)
    stored = await count_events(engine)
    response = await client.get(
        events_url(session), params={"after": "x"}, headers={TOKEN_HEADER: "forged"}
    )
    assert refusal_of(response)[:2] == (400, "bad-request")
    assert await count_events(engine) == stored  # no stale-token refusal recorded


async def seqs(response: Response) -> list[int]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return [event["seq"] for event in response.json()]


async def test_an_empty_after_means_from_the_beginning(client: AsyncClient) -> None:
    session = await two_turns(client)
    url, headers = events_url(session), token_of(session)
    everything = await seqs(await client.get(url, headers=headers))
    assert everything == [2, 3, 5, 6]  # records and outcomes; claims are not turn events
    assert await seqs(await client.get(url, params={"after": ""}, headers=headers)) == everything
    assert await seqs(await client.get(f"{url}?after=", headers=headers)) == everything
    empty_id = {**headers, "Last-Event-ID": ""}
    assert await seqs(await client.get(url, params={"after": "3"}, headers=empty_id)) == [5, 6]


async def test_last_event_id_wins_over_after(client: AsyncClient) -> None:
    session = await two_turns(client)
    headers = {**token_of(session), "Last-Event-ID": "5"}
    response = await client.get(events_url(session), params={"after": "1"}, headers=headers)
    assert await seqs(response) == [6]


@pytest.mark.parametrize(("after", "expected"), [("0", [2, 3, 5, 6]), ("00003", [5, 6])])
async def test_after_takes_any_whole_number_up_to_the_largest_seq(
    client: AsyncClient, after: str, expected: list[int]
) -> None:
    session = await two_turns(client)
    url, headers = events_url(session), token_of(session)
    assert await seqs(await client.get(url, params={"after": after}, headers=headers)) == expected
    largest = await client.get(url, params={"after": str(MAX_SEQ)}, headers=headers)
    assert await seqs(largest) == []


# ---------------------------------------------------------------- Idempotency-Key

BAD_KEYS = [
    pytest.param(b"", id="empty"),
    pytest.param(b'""', id="empty-quoted"),
    pytest.param(b"k" * 256, id="256-chars"),
    pytest.param("é".encode() * 22, id="non-ascii"),
    pytest.param(b"with a space in it, 22+ chars", id="space"),
    pytest.param(b"tab\tin-the-middle-of-22+chars", id="tab"),
    pytest.param(b"control\x01chars-in-the-key-22+", id="control-char"),
    pytest.param(b"delete\x7fchars-in-the-key-22+", id="del"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_an_unacceptable_key_on_a_start_is_a_bad_request_that_starts_nothing(
    client: AsyncClient, engine: AsyncEngine, key: bytes
) -> None:
    before = await count_sessions(engine)
    response = await client.post(
        "/v1/session", json={"message": "m"}, headers={KEY_HEADER.encode(): key}
    )
    assert refusal_of(response) == (400, "bad-request", BAD_KEY)
    assert await count_sessions(engine) == before


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_an_unacceptable_key_on_a_continue_is_a_bad_request_that_spends_nothing(
    client: AsyncClient, key: bytes
) -> None:
    session = await start(client)
    response = await client.post(
        f"/v1/session/{session['sessionId']}/message",
        json={"message": "m", "continuationToken": session["continuationToken"]},
        headers={KEY_HEADER.encode(): key},
    )
    assert refusal_of(response) == (400, "bad-request", BAD_KEY)
    assert (await send(client, session["sessionId"], session["continuationToken"])).status_code == (
        200
    )


async def test_a_start_key_of_21_characters_is_too_short_and_22_will_do(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    before = await count_sessions(engine)
    short = await client.post(
        "/v1/session", json={"message": "m"}, headers={KEY_HEADER: new_key(21)}
    )
    assert refusal_of(short) == (400, "bad-request", SHORT_START_KEY)
    assert await count_sessions(engine) == before
    enough = await client.post(
        "/v1/session", json={"message": "m"}, headers={KEY_HEADER: new_key(22)}
    )
    assert enough.status_code == 200, enough.text
    assert "Idempotent-Replayed" not in enough.headers


async def test_a_continue_key_may_be_one_character_or_255(client: AsyncClient) -> None:
    session = await start(client)
    token = session["continuationToken"]
    for key in ("k", "~" * 255):
        reply = await send(client, session["sessionId"], token, headers={KEY_HEADER: key})
        assert reply.status_code == 200, reply.text
        token = reply.json()["continuationToken"]


async def test_a_quoted_key_is_the_key_without_its_quotes(client: AsyncClient) -> None:
    key = new_key()
    first = await client.post("/v1/session", json={"message": "m"}, headers={KEY_HEADER: key})
    assert first.status_code == 200, first.text
    quoted = await client.post(
        "/v1/session", json={"message": "m"}, headers={KEY_HEADER: f'"{key}"'}
    )
    assert quoted.status_code == 200, quoted.text
    assert quoted.headers["Idempotent-Replayed"] == "true"
    assert quoted.json() == first.json()


async def test_a_key_quoted_on_one_side_only_keeps_its_quote(client: AsyncClient) -> None:
    key = new_key()
    first = await client.post("/v1/session", json={"message": "m"}, headers={KEY_HEADER: key})
    assert first.status_code == 200, first.text
    half = await client.post("/v1/session", json={"message": "m"}, headers={KEY_HEADER: f'"{key}'})
    assert half.status_code == 200, half.text
    assert "Idempotent-Replayed" not in half.headers
    assert half.json()["sessionId"] != first.json()["sessionId"]


@pytest.mark.parametrize("endpoint", ["start", "continue"])
async def test_an_oversized_body_with_a_key_is_too_large_and_spends_no_key(
    client: AsyncClient, engine: AsyncEngine, endpoint: str
) -> None:
    key = new_key()
    session = await start(client)
    url = "/v1/session" if endpoint == "start" else f"/v1/session/{session['sessionId']}/message"
    token = {} if endpoint == "start" else {"continuationToken": session["continuationToken"]}
    before = await count_sessions(engine)
    huge = await client.post(
        url, json={"message": "x" * (8 * MIB), **token}, headers={KEY_HEADER: key}
    )
    assert refusal_of(huge) == (413, "too-large", "request body is too large")
    assert await count_sessions(engine) == before
    # The key was never seen: with a body that fits, it runs the turn (no mismatch).
    fits = await client.post(url, json={"message": "m", **token}, headers={KEY_HEADER: key})
    assert fits.status_code == 200, fits.text
    assert "Idempotent-Replayed" not in fits.headers


async def test_concurrent_keyed_retries_of_one_start_make_one_session(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    key = new_key()
    before = await count_sessions(engine)
    answers = await asyncio.gather(
        *(
            client.post("/v1/session", json={"message": "m"}, headers={KEY_HEADER: key})
            for _ in range(12)
        )
    )
    assert await count_sessions(engine) == before + 1
    ok = [answer.json() for answer in answers if answer.status_code == 200]
    others = [refusal_of(answer) for answer in answers if answer.status_code != 200]
    assert ok
    assert {(body["sessionId"], body["continuationToken"]) for body in ok} == {
        (ok[0]["sessionId"], ok[0]["continuationToken"])
    }
    assert set(others) <= {(409, "in-flight", "a turn is already in flight for this session")}
    for answer in answers:
        if answer.status_code == 409:
            assert answer.headers["Retry-After"] == "1"
    again = await client.post("/v1/session", json={"message": "m"}, headers={KEY_HEADER: key})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["sessionId"] == ok[0]["sessionId"]


# ---------------------------------------------------------------- cancel


@pytest.mark.parametrize("wait", ["-1", "60.001", "61", "soon", "nan", "inf"])
async def test_a_cancel_wait_out_of_range_is_a_bad_request(
    client: AsyncClient, engine: AsyncEngine, wait: str
) -> None:
    session = await start(client)
    stored = await count_events(engine)
    response = await client.post(
        cancel_url(session), params={"wait": wait}, headers=token_of(session)
    )
    status, reason, _ = refusal_of(response)
    assert (status, reason) == (400, "bad-request")
    assert await count_events(engine) == stored


@pytest.mark.parametrize("wait", ["0", "60", "0.5"])
async def test_a_cancel_wait_within_range_is_accepted(client: AsyncClient, wait: str) -> None:
    session = await start(client)
    response = await client.post(
        cancel_url(session), params={"wait": wait}, headers=token_of(session)
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "idle"


async def held(
    client: AsyncClient, held_turns: HeldTurns
) -> tuple[dict[str, Any], asyncio.Task[Response]]:
    """A session whose turn 2 is held in flight, and the task of its request."""
    session = await start(client)
    holding = asyncio.create_task(
        send(client, session["sessionId"], session["continuationToken"], "/hold")
    )
    await asyncio.wait_for(held_turns.entered.wait(), 10)
    return session, holding


async def test_repeated_cancels_ask_once_and_the_last_is_a_no_op(
    client: AsyncClient, engine: AsyncEngine, held_turns: HeldTurns
) -> None:
    session, holding = await held(client, held_turns)
    url, headers = cancel_url(session), token_of(session)
    first, second = await asyncio.gather(
        client.post(url, headers=headers), client.post(url, headers=headers)
    )
    assert refusal_of(await holding) == CANCELLED
    third = await client.post(url, headers=headers)  # the turn is over: nothing to stop
    for answer in (first, second, third):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["status"], body["turn"]) == ("idle", 1)
    kinds = await event_kinds(engine, session["sessionId"])
    assert kinds.count("cancel-requested") == 1
    assert kinds[-2:] == ["cancel-requested", "released"]
    released = (await events_of(engine, session["sessionId"]))[-1]
    assert released["data"]["cause"] == "cancelled"
    # The token stays valid.
    assert (await send(client, session["sessionId"], session["continuationToken"])).status_code == (
        200
    )


async def test_many_cancels_racing_the_turns_end_answer_without_error_and_one_outcome(
    client: AsyncClient, engine: AsyncEngine, held_turns: HeldTurns
) -> None:
    session, holding = await held(client, held_turns)
    url, headers = cancel_url(session), token_of(session)
    cancels = [asyncio.create_task(client.post(url, headers=headers)) for _ in range(10)]
    held_turns.let_go.set()
    answers = await asyncio.gather(*cancels)
    turn = await holding
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "idle"
    kinds = await event_kinds(engine, session["sessionId"])
    ends = [kind for kind in kinds if kind in {"committed", "released"}]
    assert len(ends) == 2  # turn 1's commit, and exactly one end of turn 2
    assert kinds.count("cancel-requested") <= 1
    if ends[-1] == "committed":
        assert turn.status_code == 200, turn.text
        following = turn.json()["continuationToken"]
        stale = await send(client, session["sessionId"], session["continuationToken"])
        assert refusal_of(stale)[:2] == (409, "stale-token")
        assert (await send(client, session["sessionId"], following)).status_code == 200
    else:
        assert refusal_of(turn) == CANCELLED
        token = session["continuationToken"]
        assert (await send(client, session["sessionId"], token)).status_code == 200


# ---------------------------------------------------------------- refusals on the new routes


@pytest.mark.parametrize("route", ["read", "events", "cancel"])
async def test_a_ten_kb_session_id_is_an_unknown_session_cut_short(
    client: AsyncClient, route: str
) -> None:
    huge = "s" * 10_000
    path = {
        "read": ("GET", f"/v1/session/{huge}"),
        "events": ("GET", f"/v1/session/{huge}/events"),
        "cancel": ("POST", f"/v1/session/{huge}/cancel"),
    }[route]
    response = await client.request(*path, headers={TOKEN_HEADER: "any"})
    assert refusal_of(response) == (404, "unknown-session", f"unknown session '{'s' * 200}'")


@pytest.mark.parametrize("route", ["read", "events", "cancel"])
async def test_an_empty_token_header_is_a_missing_token(client: AsyncClient, route: str) -> None:
    session = await start(client)
    method = "POST" if route == "cancel" else "GET"
    path = {
        "read": f"/v1/session/{session['sessionId']}",
        "events": events_url(session),
        "cancel": cancel_url(session),
    }[route]
    response = await client.request(method, path, headers={TOKEN_HEADER: ""})
    assert refusal_of(response) == (400, "missing-token", "missing continuationToken")


async def test_a_settled_sessions_stream_is_its_events_then_ends(client: AsyncClient) -> None:
    session = await two_turns(client)
    headers = {**token_of(session), "Accept": "text/event-stream", "Last-Event-ID": "4"}
    response = await client.get(events_url(session), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [frame for frame in response.text.split("\r\n\r\n") if frame]
    assert frames[0] == "id: 4\r\nretry: 1000"  # the priming message first
    assert [frame.split("\r\n")[0] for frame in frames[1:]] == ["id: 5", "id: 6"]


async def test_a_settled_sessions_stream_is_503_when_its_events_cannot_be_read(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read before the stream starts: a failing database is a 503 to retry, not a 200 whose
    stream is cut short."""
    session = await two_turns(client)

    async def unavailable(*_: object) -> list[object]:
        raise StoreUnavailable("the database is down")

    monkeypatch.setattr(Following, "replay", unavailable)
    headers = {**token_of(session), "Accept": "text/event-stream"}
    response = await client.get(events_url(session), headers=headers)
    assert refusal_of(response)[:2] == (503, "unavailable")
