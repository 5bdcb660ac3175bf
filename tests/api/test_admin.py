"""The audit API (/v1/admin): access by admin key only, histories as stored, the session
list, the global feed, and bad input answered with a 4xx that names what was wrong."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.infra.settings import Settings
from tests.api.conftest import HeldTurns, in_process_client, running
from tests.api.protocol import events_of, send, start
from tests.waiting import until

KEY, OTHER_KEY = "the-first-admin-key-0123456789abcdef", "a-second-admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {KEY}"}
ADMIN_PATHS = (
    "/v1/admin/sessions",
    "/v1/admin/events",
    "/v1/admin/sessions/0190a5b0-0000-7000-8000-000000000000/events",
)


@pytest.fixture(scope="module")
def admin_turns() -> HeldTurns:
    return HeldTurns()


@pytest.fixture(scope="module")
async def admin_app_client(
    settings: Settings, engine: AsyncEngine, admin_turns: HeldTurns
) -> AsyncIterator[AsyncClient]:
    """An app with two admin keys (`engine` only so that the database is migrated first)."""
    app = create_app(replace(settings, admin_keys=(KEY, OTHER_KEY)), handler=admin_turns)
    async with running(app), in_process_client(app) as client:
        yield client


@pytest.fixture
def admin(admin_app_client: AsyncClient, admin_turns: HeldTurns) -> AsyncClient:
    admin_turns.reset()
    return admin_app_client


async def get_json(client: AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def close(client: AsyncClient, session_id: str, token: str) -> None:
    response = await client.delete(
        f"/v1/session/{session_id}", headers={"X-Continuation-Token": token}
    )
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- access


async def test_without_admin_keys_every_admin_path_is_not_found(client: AsyncClient) -> None:
    for path in ADMIN_PATHS:
        for headers in ({}, ADMIN):
            response = await client.get(path, headers=headers)
            assert response.status_code == 404
            assert response.json()["reason"] == "not-found"
    schema = (await client.get("/schema/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/v1/admin")]


async def test_a_wrong_or_missing_admin_key_is_unauthorized(admin: AsyncClient) -> None:
    session = await start(admin)
    token = session["continuationToken"]
    refused = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {token}"},  # a continuation token is no admin key
        {"X-Continuation-Token": token},
        {"X-Continuation-Token": KEY},
    ]
    for path in ADMIN_PATHS:
        for headers in refused:
            response = await admin.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["reason"] == "unauthorized"
            assert set(response.json()) == {"error", "reason"}


async def test_either_admin_key_opens_every_admin_route(admin: AsyncClient) -> None:
    session = await start(admin)
    paths = (*ADMIN_PATHS[:2], f"/v1/admin/sessions/{session['sessionId']}/events")
    for key in (KEY, OTHER_KEY, f"  {KEY}  "):
        for path in paths:
            response = await admin.get(path, headers={"Authorization": f"bearer {key}"})
            assert response.status_code == 200, (path, response.text)
            assert response.headers["cache-control"] == "no-store"


async def test_the_key_is_checked_before_any_parameter(admin: AsyncClient) -> None:
    response = await admin.get("/v1/admin/sessions", params={"limit": "0", "after": "x"})
    assert response.status_code == 401


async def test_the_admin_routes_are_documented_under_the_admin_tag(admin: AsyncClient) -> None:
    schema = (await admin.get("/schema/openapi.json")).json()
    admin_paths = {path: item for path, item in schema["paths"].items() if "/admin/" in path}
    assert set(admin_paths) == {
        "/v1/admin/sessions",
        "/v1/admin/sessions/{session_id}/events",
        "/v1/admin/events",
    }
    assert all(item["get"]["tags"] == ["admin"] for item in admin_paths.values())


# ---------------------------------------------------------------- a session's history


async def eventful_session(client: AsyncClient) -> str:
    """Two commits, a replayed and a missing token, a failed turn, then a close."""
    session = await start(client, "hello")
    session_id, first = session["sessionId"], session["continuationToken"]
    second = (await send(client, session_id, first, "again")).json()["continuationToken"]
    assert (await send(client, session_id, first)).status_code == 409  # replayed
    assert (await send(client, session_id, None)).status_code == 400  # missing
    assert (await send(client, session_id, second, "/fail")).status_code == 500
    await close(client, session_id, second)
    return str(session_id)


EVENTFUL_KINDS = [
    "started",
    "record",
    "committed",
    "claimed",
    "record",
    "committed",
    "refused",
    "refused",
    "claimed",
    "record",
    "released",
    "closed",
]


def as_stored(event: dict[str, Any]) -> dict[str, Any]:
    """An event of the API in the table's own terms, to compare with a row."""
    return {
        "position": event["position"],
        "session_id": event["sessionId"],
        "seq": event["seq"],
        "refusal_seq": event["refusalSeq"],
        "kind": event["kind"],
        "turn": event["turn"],
        "consumed": event["consumed"],
        "issued": event["issued"],
        "data": event["data"],
        "recorded_at": datetime.fromisoformat(event["recordedAt"]),
        "hash": event["hash"],
    }


async def test_a_sessions_history_is_served_exactly_as_stored(
    admin: AsyncClient, engine: AsyncEngine
) -> None:
    session_id = await eventful_session(admin)
    body = await get_json(admin, f"/v1/admin/sessions/{session_id.upper()}/events")
    history = body["events"]
    assert body["sessionId"] == session_id
    assert [event["kind"] for event in history] == EVENTFUL_KINDS
    rows = await events_of(engine, session_id)
    for row in rows:
        del row["txid"]
    assert [as_stored(event) for event in history] == rows
    records = [(event["turn"], event["void"]) for event in history if event["kind"] == "record"]
    assert records == [(1, False), (2, False), (3, True)]
    assert not any(event["void"] for event in history if event["kind"] != "record")
    refused = [event["data"]["reason"] for event in history if event["kind"] == "refused"]
    assert refused == ["stale-token", "missing-token"]
    assert history[-2]["data"] == {"cause": "failed", "error": "the demo handler was asked to fail"}


async def test_a_sessions_history_comes_in_pages_that_add_up_to_the_whole(
    admin: AsyncClient,
) -> None:
    """Page by page (two events a page, the void marks judged as for the whole history):
    the same events as one page of them all, every page but the last full, `next` null on
    the last; an empty `after` is an absent one."""
    session_id = await eventful_session(admin)
    path = f"/v1/admin/sessions/{session_id}/events"
    whole = await get_json(admin, path, after="")
    assert whole["next"] is None
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"after": cursor} if cursor else {})
        body = await get_json(admin, path, **params)
        pages.append(body["events"])
        cursor = body["next"]
        if cursor is None:
            break
        assert cursor == str(body["events"][-1]["position"])
    assert [event for page in pages for event in page] == whole["events"]
    assert all(len(page) == 2 for page in pages[:-1])
    assert len(pages) >= len(EVENTFUL_KINDS) // 2
    past_the_end = await get_json(admin, path, after=str(whole["events"][-1]["position"]))
    assert past_the_end == {"sessionId": session_id, "events": [], "next": None}


async def test_an_unknown_session_has_no_history(admin: AsyncClient) -> None:
    for session_id in ("0190a5b0-0000-7000-8000-000000000000", "not-a-session"):
        response = await admin.get(f"/v1/admin/sessions/{session_id}/events", headers=ADMIN)
        assert response.status_code == 404
        assert response.json() == {
            "error": f"unknown session '{session_id}'",
            "reason": "unknown-session",
        }


# ---------------------------------------------------------------- the session list


async def listed(client: AsyncClient, limit: int, **filters: str) -> tuple[list[str], int]:
    """Every session id the filters select, page by page, and how many pages it took."""
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {**filters, "limit": limit}
        if cursor is not None:
            params["after"] = cursor
        body = await get_json(client, "/v1/admin/sessions", **params)
        pages += 1
        ids += [session["sessionId"] for session in body["sessions"]]
        cursor = body["next"]
        if cursor is None:
            return ids, pages
        assert cursor == ids[-1]


def until_now() -> str:
    """The end of a test's window of creation times: other tests share the database, and
    some start sessions dated ahead of now (to step past a lease or a recovery window)."""
    return (datetime.now(UTC) + timedelta(seconds=1)).isoformat()


async def test_pages_of_the_session_list_return_every_session_exactly_once(
    admin: AsyncClient,
) -> None:
    since = datetime.now(UTC).isoformat()
    created = [(await start(admin))["sessionId"] for _ in range(7)]
    ids, pages = await listed(admin, 2, created_after=since, created_before=until_now())
    assert ids == sorted(created)
    assert pages == 4
    every, _ = await listed(admin, 500)
    assert every == sorted(set(every))
    assert set(created) <= set(every)


async def test_the_session_list_filters_by_status_and_creation_time(
    admin: AsyncClient, admin_turns: HeldTurns
) -> None:
    since = datetime.now(UTC).isoformat()
    idle = await start(admin)
    closing = await start(admin)
    await close(admin, closing["sessionId"], closing["continuationToken"])
    busy = await start(admin)
    held = asyncio.create_task(send(admin, busy["sessionId"], busy["continuationToken"], "/hold"))
    await asyncio.wait_for(admin_turns.entered.wait(), 10)
    until = until_now()
    try:
        by_status = {
            status: (
                await listed(admin, 50, created_after=since, created_before=until, status=status)
            )[0]
            for status in ("idle", "closed", "in-flight")
        }
    finally:
        admin_turns.let_go.set()
        await held
    assert by_status == {
        "idle": [idle["sessionId"]],
        "closed": [closing["sessionId"]],
        "in-flight": [busy["sessionId"]],
    }
    assert (await listed(admin, 50, created_before=since, status="closed"))[0].count(
        closing["sessionId"]
    ) == 0
    page = await get_json(
        admin, "/v1/admin/sessions", created_after=since, created_before=until, status="closed"
    )
    (summary,) = page["sessions"]
    assert set(summary) == {
        "sessionId",
        "status",
        "version",
        "turn",
        "createdAt",
        "updatedAt",
        "refusals",
        "lastOutcome",
        "owner",
    }
    assert (summary["status"], summary["turn"], summary["refusals"]) == ("closed", 1, 0)
    assert summary["lastOutcome"]["status"] == "finished"


# ---------------------------------------------------------------- the global feed


async def follow(client: AsyncClient, cursor: str | None) -> tuple[list[dict[str, Any]], str]:
    served: list[dict[str, Any]] = []
    while True:
        params = {"limit": 100} if cursor is None else {"limit": 100, "after": cursor}
        body = await get_json(client, "/v1/admin/events", **params)
        served += body["events"]
        if not body["events"]:
            assert body["next"] == cursor, "with nothing new, next is the cursor given"
            assert cursor is not None
            return served, cursor
        cursor = body["next"]


async def test_the_feed_serves_new_events_once_from_the_cursor(
    admin: AsyncClient, engine: AsyncEngine
) -> None:
    await start(admin)
    everything, cursor = await follow(admin, None)
    positions = [event["position"] for event in everything]
    assert len(positions) == len(set(positions))
    session_id = await eventful_session(admin)
    stored = [row["position"] for row in await events_of(engine, session_id)]
    news: list[dict[str, Any]] = []

    async def caught_up() -> bool:
        # On PostgreSQL the feed serves nothing newer than the oldest transaction still
        # open anywhere in the cluster (infra/postgres_reader.py), and a shared cluster
        # has others: the session's events come, in order, once those have ended.
        nonlocal cursor
        served, cursor = await follow(admin, cursor)
        news.extend(served)
        return len(news) >= len(stored)

    await until(caught_up, "the feed serves the session's events")
    assert [event["position"] for event in news] == stored
    assert [event["kind"] for event in news] == EVENTFUL_KINDS
    assert "void" not in news[0]  # a feed event is the row; void is a session's verdict


# ---------------------------------------------------------------- bad input

LONG = "x" * 10_000
BAD_REQUESTS = [
    ("/v1/admin/sessions", {"limit": "0"}, "limit"),
    ("/v1/admin/sessions", {"limit": "10000"}, "limit"),
    ("/v1/admin/sessions", {"limit": "many"}, "limit"),
    ("/v1/admin/sessions", {"status": "sleeping"}, "status"),
    ("/v1/admin/sessions", {"status": LONG}, "status"),
    ("/v1/admin/sessions", {"created_after": "yesterday"}, "created_after"),
    ("/v1/admin/sessions", {"created_before": "2026-13-01T00:00:00Z"}, "created_before"),
    ("/v1/admin/sessions", {"created_after": "2026-01-01T00:00:00"}, "created_after"),
    ("/v1/admin/sessions", {"after": "not-a-cursor"}, "after"),
    ("/v1/admin/sessions", {"after": LONG}, "after"),
    ("/v1/admin/events", {"after": "not-a-cursor"}, "after"),
    ("/v1/admin/events", {"after": LONG}, "after"),
    ("/v1/admin/events", {"limit": "0"}, "limit"),
    ("/v1/admin/events", {"limit": "10000"}, "limit"),
    (ADMIN_PATHS[2], {"after": "not-a-cursor"}, "after"),
    (ADMIN_PATHS[2], {"after": "-1"}, "after"),
    (ADMIN_PATHS[2], {"after": LONG}, "after"),
    (ADMIN_PATHS[2], {"limit": "0"}, "limit"),
    (ADMIN_PATHS[2], {"limit": "10000"}, "limit"),
]


async def twice(client: AsyncClient, path: str, params: dict[str, str]) -> Response:
    first = await client.get(path, params=params, headers=ADMIN)
    again = await client.get(path, params=params, headers=ADMIN)
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    return first


@pytest.mark.parametrize(("path", "params", "named"), BAD_REQUESTS)
async def test_a_bad_parameter_is_a_bad_request_that_names_it(
    admin: AsyncClient, path: str, params: dict[str, str], named: str
) -> None:
    response = await twice(admin, path, params)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "reason"}
    assert body["reason"] == "bad-request"
    assert named in body["error"]
    assert len(body["error"]) <= 300  # never the 10 KB value back


async def test_a_10_kb_session_id_is_an_unknown_session_quoted_short(admin: AsyncClient) -> None:
    response = await twice(admin, f"/v1/admin/sessions/{LONG}/events", {})
    assert response.status_code == 404
    assert response.json() == {
        "error": f"unknown session '{'x' * 200}'",
        "reason": "unknown-session",
    }


async def test_a_cursor_is_kept_apart_from_a_session_id(admin: AsyncClient) -> None:
    # A feed cursor is no session-list cursor, and the other way round. The session is
    # started first: on a database of its own (this test run first) the feed would be empty
    # and give no cursor.
    session = await start(admin)
    _, cursor = await follow(admin, None)
    assert (await twice(admin, "/v1/admin/sessions", {"after": cursor})).status_code == 400
    assert (
        await twice(admin, "/v1/admin/events", {"after": session["sessionId"]})
    ).status_code == (400)


async def test_an_unreachable_database_is_503_on_admin_routes_too() -> None:
    unreachable = Settings(
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none", admin_keys=(KEY,)
    )
    app = create_app(unreachable)
    async with running(app), in_process_client(app) as client:
        response = await client.get("/v1/admin/sessions", headers=ADMIN)
    assert response.status_code == 503
    assert response.json()["reason"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
