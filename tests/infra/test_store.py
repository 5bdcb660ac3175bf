"""The store's contract: one transaction per method, the projection in step with the
events, and (on SQLite and PostgreSQL) the unique keys as the last word. What only uses the
port runs against the in-memory store as well (EVERY_STORE)."""

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.decisions import ClaimGranted
from baton.domain.events import CloseCause, Lease, ReleaseCause, TurnCommitted
from baton.domain.identifiers import SessionId, digest_token, mint_token
from baton.domain.outcomes import Contended, Finished
from baton.domain.ports import SessionStore
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.state import SessionStatus
from baton.infra.conflict import StoreCorrupted
from baton.infra.tables import events, sessions
from tests import store_calls as calls
from tests.conftest import Stored
from tests.databases import EVERY_STORE

pytestmark = pytest.mark.pgbouncer  # the store contract, through PgBouncer too


def now() -> datetime:
    return datetime.now(UTC)


def lease(seconds: float = 60) -> Lease:
    """A lease held by this test process for `seconds` from now."""
    return Lease("test", now() + timedelta(seconds=seconds))


def new_id() -> SessionId:
    return SessionId(str(uuid.uuid4()))


def new_token() -> str:
    return mint_token(secrets.token_bytes)


async def committed_session(store: SessionStore) -> tuple[SessionId, str]:
    """A session whose first turn committed; its id and current token."""
    granted = await calls.start(store, new_id(), {"message": "hi"}, now(), lease())
    token = new_token()
    result = await calls.commit(
        store,
        granted.state.session_id,
        granted.claim,
        Finished("ok"),
        digest_token(token),
        now(),
        consumed=None,
    )
    assert isinstance(result, TurnCommitted)
    return granted.state.session_id, token


StoredEvents = Callable[[SessionId], Awaitable[list[Stored]]]


async def kinds(stored_events: StoredEvents, session_id: SessionId) -> list[str]:
    """The kinds of a session's events, refusals included, in the order they were written."""
    return [event.kind for event in await stored_events(session_id)]


async def sql_kinds(engine: AsyncEngine, session_id: SessionId) -> list[str]:
    query = select(events.c.kind).where(events.c.session_id == session_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query.order_by(events.c.position))).scalars())


@EVERY_STORE
async def test_start_writes_the_started_event_and_an_in_flight_projection(
    store: SessionStore,
) -> None:
    granted = await calls.start(store, new_id(), {"message": "hi"}, now(), lease())
    loaded = await store.load(granted.state.session_id)
    assert loaded == granted.state
    assert loaded is not None
    assert (loaded.version, loaded.turn, loaded.status) == (1, 0, SessionStatus.IN_FLIGHT)


async def test_commit_consumes_nothing_on_turn_one_and_issues_the_first_token(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session_id, token = await committed_session(store)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(events).where(
                    events.c.session_id == session_id, events.c.kind == "committed"
                )
            )
        ).one()
    assert (row.seq, row.turn, row.consumed, row.issued) == (2, 1, None, digest_token(token))
    loaded = await store.load(session_id)
    assert loaded is not None
    assert (loaded.status, loaded.token_digest, loaded.turn) == (
        SessionStatus.IDLE,
        digest_token(token),
        1,
    )


@EVERY_STORE
async def test_claim_with_the_current_token_then_commit_rotates_it(store: SessionStore) -> None:
    session_id, token = await committed_session(store)
    granted = await calls.claim(
        store, session_id, digest_token(token), {"message": "2"}, now(), lease()
    )
    assert isinstance(granted, ClaimGranted)
    assert (granted.event.turn, granted.event.seq) == (2, 3)
    following = new_token()
    result = await calls.commit(
        store,
        session_id,
        granted.claim,
        Finished("two"),
        digest_token(following),
        now(),
        consumed=digest_token(token),
    )
    assert isinstance(result, TurnCommitted)
    assert result.consumed == digest_token(token)
    again = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert again == Refusal(RefusalReason.STALE_TOKEN, "stale or invalid continuationToken")


async def test_a_refusal_is_an_event_that_leaves_the_version_alone(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session_id, _ = await committed_session(store)
    before = await store.load(session_id)
    refusal = await calls.claim(store, session_id, digest_token("forged"), {}, now(), lease())
    assert isinstance(refusal, Refusal)
    assert await store.load(session_id) == before
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(events).where(events.c.session_id == session_id, events.c.kind == "refused")
            )
        ).one()
    assert (row.seq, row.data) == (None, {"reason": "stale-token"})


async def test_a_refusal_naming_no_session_stores_a_null_session_and_the_presented_id(
    store: SessionStore, engine: AsyncEngine
) -> None:
    ghost = new_id()
    refusal = await calls.claim(store, ghost, digest_token("x"), {}, now(), lease())
    assert refusal == Refusal(RefusalReason.UNKNOWN_SESSION, f"unknown session '{ghost}'")
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(events).where(
                    events.c.kind == "refused", events.c.data["sessionId"].as_string() == ghost
                )
            )
        ).all()
    assert len(rows) == 1
    assert rows[0].session_id is None


@EVERY_STORE
async def test_concurrent_claims_with_one_token_grant_exactly_one(store: SessionStore) -> None:
    session_id, token = await committed_session(store)
    results = await asyncio.gather(
        *(
            calls.claim(store, session_id, digest_token(token), {}, now(), lease())
            for _ in range(20)
        )
    )
    granted = [result for result in results if isinstance(result, ClaimGranted)]
    refused = [result for result in results if isinstance(result, Refusal)]
    assert len(granted) == 1
    assert {refusal.reason for refusal in refused} == {RefusalReason.IN_FLIGHT}


@EVERY_STORE
async def test_release_keeps_the_token_valid(store: SessionStore) -> None:
    session_id, token = await committed_session(store)
    granted = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert isinstance(granted, ClaimGranted)
    await calls.release(store, session_id, granted.claim, ReleaseCause.FAILED, "boom", now())
    loaded = await store.load(session_id)
    assert loaded is not None
    assert (loaded.status, loaded.token_digest) == (SessionStatus.IDLE, digest_token(token))
    assert isinstance(
        await calls.claim(store, session_id, digest_token(token), {}, now(), lease()), ClaimGranted
    )


@EVERY_STORE
async def test_release_with_close_closes_the_session(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    granted = await calls.start(store, new_id(), {}, now(), lease())
    session_id = granted.state.session_id
    await calls.release(
        store,
        session_id,
        granted.claim,
        ReleaseCause.FAILED,
        "boom",
        now(),
        close=CloseCause.START_FAILED,
    )
    loaded = await store.load(session_id)
    assert loaded is not None
    assert (loaded.status, loaded.token_digest) == (SessionStatus.CLOSED, None)
    assert await kinds(stored_events, session_id) == ["started", "released", "closed"]


@EVERY_STORE
async def test_a_claim_that_is_no_longer_the_sessions_claim_cannot_write(
    store: SessionStore,
) -> None:
    session_id, token = await committed_session(store)
    first = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert isinstance(first, ClaimGranted)
    await calls.release(store, session_id, first.claim, ReleaseCause.FAILED, "gone", now())
    second = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert isinstance(second, ClaimGranted)

    late_record = await calls.append_record(store, session_id, first.claim, {"late": True}, now())
    late_commit = await calls.commit(
        store,
        session_id,
        first.claim,
        Finished("late"),
        digest_token(new_token()),
        now(),
        consumed=digest_token(token),
    )
    await calls.release(store, session_id, first.claim, ReleaseCause.FAILED, "late", now())

    version = second.state.version
    assert late_record == Contended(current=version)
    assert late_commit == Contended(current=version)
    loaded = await store.load(session_id)
    assert loaded is not None
    assert (loaded.version, loaded.claim) == (version, second.claim)  # the late release did nothing


async def test_a_unique_violation_the_projection_cannot_explain_is_corruption_not_a_write(
    store: SessionStore, engine: AsyncEngine
) -> None:
    """The unique key has the last word: with a corrupted projection the store's decision
    is wrong, the key refuses the write, and a fresh read decides the same again, so the
    store says the table disagrees with itself instead of answering as if all were well."""
    session_id, token = await committed_session(store)
    granted = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert isinstance(granted, ClaimGranted)
    async with engine.begin() as conn:
        await conn.execute(
            update(sessions).where(sessions.c.session_id == session_id).values(version=2)
        )
    with pytest.raises(StoreCorrupted):
        await calls.commit(
            store,
            session_id,
            granted.claim,
            Finished("x"),
            digest_token(new_token()),
            now(),
            consumed=digest_token(token),
        )
    assert await sql_kinds(engine, session_id) == ["started", "committed", "claimed"]


async def test_a_conflict_that_persists_on_claim_is_reported_as_corruption(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session_id, token = await committed_session(store)
    async with engine.begin() as conn:
        await conn.execute(
            update(sessions).where(sessions.c.session_id == session_id).values(version=1)
        )
    with pytest.raises(StoreCorrupted):
        await calls.claim(store, session_id, digest_token(token), {}, now(), lease())


def _committed_row(
    session_id: SessionId, seq: int, consumed: str | None, issued: str
) -> dict[str, object]:
    return {
        "session_id": session_id,
        "seq": seq,
        "kind": "committed",
        "turn": seq,
        "consumed": consumed,
        "issued": issued,
        "data": {},
        "recorded_at": now(),
    }


async def test_the_database_refuses_to_consume_a_token_twice(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session_id, token = await committed_session(store)
    granted = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert isinstance(granted, ClaimGranted)
    assert isinstance(
        await calls.commit(
            store,
            session_id,
            granted.claim,
            Finished(1),
            digest_token(new_token()),
            now(),
            consumed=digest_token(token),
        ),
        TurnCommitted,
    )
    second = _committed_row(session_id, 99, digest_token(token), digest_token(new_token()))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(events).values(second))


@pytest.mark.parametrize("column", ["issued", "seq"])
async def test_the_database_refuses_a_reissued_token_or_a_reused_seq(
    store: SessionStore, engine: AsyncEngine, column: str
) -> None:
    session_id, token = await committed_session(store)
    row = _committed_row(session_id, 50, None, digest_token(new_token()))
    row[column] = digest_token(token) if column == "issued" else 2
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(events).values(row))


@EVERY_STORE
@pytest.mark.parametrize("presented", ["another", None])
async def test_a_commit_that_names_another_consumed_token_consumes_nothing(
    store: SessionStore, stored_events: StoredEvents, presented: str | None
) -> None:
    """The commit spends the token the claim was made with, and only that one: a commit
    naming another (or none) ends contended and the current token stays current."""
    session_id, token = await committed_session(store)
    granted = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert isinstance(granted, ClaimGranted)
    result = await calls.commit(
        store,
        session_id,
        granted.claim,
        Finished("x"),
        digest_token(new_token()),
        now(),
        consumed=digest_token(presented) if presented else None,
    )
    assert result == Contended(current=granted.state.version)
    loaded = await store.load(session_id)
    assert loaded is not None
    assert (loaded.token_digest, loaded.turn, loaded.claim) == (
        digest_token(token),
        1,
        granted.claim,
    )
    assert await kinds(stored_events, session_id) == ["started", "committed", "claimed"]
