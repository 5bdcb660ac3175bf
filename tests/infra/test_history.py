"""infra/history.py: a session's history as stored, void records, and a global feed whose
cursor never skips a row that commits late."""

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.decisions import ClaimGranted
from baton.domain.events import ReleaseCause
from baton.domain.history import void_records
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.outcomes import Finished
from baton.domain.ports import SessionStore
from baton.infra.chain import standalone
from baton.infra.history import InvalidCursor, SessionReader, StoredEvent
from baton.infra.tables import events
from tests import store_calls as calls
from tests.infra.test_store import committed_session, lease, new_token, now

# ---------------------------------------------------------------- void records


def stored(position: int, kind: str, seq: int | None) -> StoredEvent:
    return StoredEvent(
        position=position,
        session_id=None,
        seq=seq,
        refusal_seq=None,
        kind=kind,
        turn=1,
        consumed=None,
        issued=None,
        data={},
        recorded_at=datetime.now(UTC),
        hash=None,
    )


@pytest.mark.parametrize(
    ("kinds", "void"),
    [
        (["started", "record", "committed"], set()),
        (["claimed", "record", "record", "released"], {2, 3}),
        (["claimed", "record", "expired", "claimed", "record", "committed"], {2}),
        (["claimed", "record", "closed"], {2}),
        (["claimed", "record", "renewed", "record"], set()),  # still running: may commit
    ],
)
def test_a_record_is_void_when_its_turn_attempt_did_not_commit(
    kinds: list[str], void: set[int]
) -> None:
    history = [stored(seq, kind, seq) for seq, kind in enumerate(kinds, start=1)]
    assert {event.position for event in void_records(history)} == void


def test_void_is_decided_in_seq_order_and_a_refusal_ends_no_attempt() -> None:
    # Here position order (claimed, record, released) would void the record; seq order
    # (claimed, released, record) puts it in a new attempt, still running.
    history = [
        stored(10, "claimed", 1),
        stored(11, "record", 3),
        stored(12, "refused", None),
        stored(13, "released", 2),
    ]
    assert void_records(history) == []
    history[3] = stored(13, "released", 4)
    assert [event.position for event in void_records(history)] == [11]


# ---------------------------------------------------------------- a session's history


async def eventful_session(store: SessionStore) -> SessionId:
    """Turn 1 committed; a failed attempt at turn 2 (released); an attempt whose lease
    lapsed (expired, taken over); turn 2 committed by the attempt that took over."""
    session_id, token = await committed_session(store)
    presented = digest_token(token)
    failed = await calls.claim(store, session_id, presented, {"message": "/fail"}, now(), lease())
    assert isinstance(failed, ClaimGranted)
    await calls.append_record(store, session_id, failed.claim, {"attempt": "failed"}, now())
    await calls.release(store, session_id, failed.claim, ReleaseCause.FAILED, "boom", now())
    lapsed = await calls.claim(store, session_id, presented, {"message": "slow"}, now(), lease(-1))
    assert isinstance(lapsed, ClaimGranted)
    await calls.append_record(store, session_id, lapsed.claim, {"attempt": "lapsed"}, now())
    taken = await calls.claim(store, session_id, presented, {"message": "again"}, now(), lease())
    assert isinstance(taken, ClaimGranted)
    await calls.append_record(store, session_id, taken.claim, {"attempt": "kept"}, now())
    following = digest_token(new_token())
    await calls.commit(
        store, session_id, taken.claim, Finished("ok"), following, now(), consumed=presented
    )
    return session_id


async def stored_rows(engine: AsyncEngine, session_id: str) -> list[dict[str, Any]]:
    query = select(events).where(events.c.session_id == session_id).order_by(events.c.position)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def test_a_sessions_history_is_every_row_as_stored_with_void_records_marked(
    reader: SessionReader, store: SessionStore, engine: AsyncEngine
) -> None:
    session_id = await eventful_session(store)
    history = await reader.session_events(session_id)
    assert history is not None
    rows = await stored_rows(engine, session_id)
    for row in rows:
        del row["txid"]
    assert [
        {name: getattr(event, name) for name in row}
        for event, row in zip(history, rows, strict=True)
    ] == rows
    assert [event.kind for event in history] == [
        "started",
        "committed",
        "claimed",
        "record",
        "released",
        "claimed",
        "record",
        "expired",
        "claimed",
        "record",
        "committed",
    ]
    records = [(event.data, event.void) for event in history if event.kind == "record"]
    assert records == [
        ({"record": {"attempt": "failed"}}, True),
        ({"record": {"attempt": "lapsed"}}, True),
        ({"record": {"attempt": "kept"}}, False),
    ]


async def test_an_unknown_or_malformed_session_has_no_history(
    reader: SessionReader, engine: AsyncEngine
) -> None:
    assert await reader.session_events("0190a5b0-0000-7000-8000-000000000000") is None
    assert await reader.session_events("not-a-session") is None
    assert await reader.session_events("x" * 10_000) is None


async def test_a_session_id_in_upper_case_names_the_same_session(
    reader: SessionReader, store: SessionStore, engine: AsyncEngine
) -> None:
    session_id, _ = await committed_session(store)
    history = await reader.session_events(session_id.upper())
    assert history is not None
    assert [event.kind for event in history] == ["started", "committed"]


# ---------------------------------------------------------------- the global feed


async def drain(
    reader: SessionReader, cursor: str | None, page: int = 500, *, through: int | None = None
) -> tuple[list[int], str]:
    """Follow the feed to its current end: the positions served, and the cursor. With
    `through`, keep following until that position was served. On PostgreSQL a transaction
    anywhere in the cluster (another test worker's, or another run's) may hold the feed
    back a while, even before its first row: so an empty page is waited out too."""
    served: list[int] = []
    deadline = time.monotonic() + 30
    while True:
        events_page, cursor = await reader.feed(cursor, page)
        served += [event.position for event in events_page]
        if events_page:
            continue
        if cursor is not None and (through is None or through in served):
            return served, cursor
        assert time.monotonic() < deadline, (
            "an empty database: seed it before draining"
            if cursor is None
            else f"position {through} was never served"
        )
        await asyncio.sleep(0.01)


async def latest(engine: AsyncEngine) -> int:
    """The highest position in the event table now."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.max(events.c.position)))).scalar_one())


@pytest.mark.parametrize(
    "cursor", ["", "abc", "-1", "1.2.3", "\uff11\uff12", "9" * 30, "9" * 19, "1 ", "x" * 10_000]
)
async def test_a_cursor_the_feed_never_handed_out_is_refused(
    reader: SessionReader, engine: AsyncEngine, cursor: str
) -> None:
    with pytest.raises(InvalidCursor):
        await reader.feed(cursor, 10)


async def test_an_other_backends_cursor_is_refused(
    reader: SessionReader, backend: str, engine: AsyncEngine
) -> None:
    foreign = "12" if backend == "postgresql" else "1234.12"
    with pytest.raises(InvalidCursor):
        await reader.feed(foreign, 10)


async def test_with_nothing_new_the_feed_hands_back_the_cursor_it_was_given(
    reader: SessionReader, store: SessionStore, engine: AsyncEngine
) -> None:
    await committed_session(store)
    _, cursor = await drain(reader, None, through=await latest(engine))
    assert await reader.feed(cursor, 10) == ([], cursor)


# SQLite only: PostgreSQL's cursor is (txid, position).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_on_sqlite_the_cursor_is_the_position_and_rows_come_in_position_order(
    reader: SessionReader, backend: str, store: SessionStore, engine: AsyncEngine
) -> None:
    for _ in range(3):
        await committed_session(store)
    async with engine.connect() as conn:
        every = list((await conn.execute(select(events.c.position).order_by("position"))).scalars())
    served: list[int] = []
    cursor: str | None = None
    while True:
        page, cursor = await reader.feed(cursor, 4)
        if not page:
            break
        assert cursor == str(page[-1].position)
        served += [event.position for event in page]
    assert served == every
    assert cursor == str(every[-1])


# PostgreSQL: rows that commit out of position order. An orphan refusal (no session) is the
# simplest row the schema allows, written here by hand on connections of the test's own,
# with the hash a store would give it: the worker's database is shared, and its every chain
# must hold whichever test checks them after this one (tests/infra/test_audit.py).


def postgres_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def insert_orphan(conn: asyncpg.Connection) -> int:
    data = {"reason": "unknown-session"}
    row = {"session_id": None, "kind": "refused", "consumed": None, "issued": None}
    at = datetime.now(UTC)
    position: int = await conn.fetchval(
        "INSERT INTO events (session_id, kind, data, recorded_at, hash) "
        "VALUES (NULL, 'refused', $1, $2, $3) RETURNING position",
        json.dumps(data),
        at,
        standalone({**row, "data": data, "recorded_at": at}),
    )
    return position


@asynccontextmanager
async def connections(database_url: str, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    opened = [await asyncpg.connect(postgres_dsn(database_url)) for _ in range(count)]
    try:
        yield opened
    finally:
        for conn in opened:
            await conn.close()


async def naive_page(engine: AsyncEngine, after: int) -> list[int]:
    """What `position > after` would serve: the feed this module must not be."""
    query = select(events.c.position).where(events.c.position > after).order_by("position")
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


# PostgreSQL only: SQLite commits in position order.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_row_that_commits_after_a_later_position_is_still_served(
    reader: SessionReader, backend: str, database_url: str, store: SessionStore, engine: AsyncEngine
) -> None:
    await committed_session(store)
    naive_cursor = await latest(engine)
    _, cursor = await drain(reader, None, through=naive_cursor)

    async with connections(database_url, 2) as (slow, quick):
        transaction = slow.transaction()
        await transaction.start()
        early = await insert_orphan(slow)  # its transaction stays open...
        late = await insert_orphan(quick)  # ...while this one commits
        assert late > early

        while_open, cursor = await drain(reader, cursor)
        naive_seen = await naive_page(engine, naive_cursor)
        assert late not in while_open, "served a row an open, older transaction may precede"
        assert naive_seen == [late]  # a position cursor would move past `early` here...
        naive_cursor = naive_seen[-1]

        await transaction.commit()
        after_commit, cursor = await drain(reader, cursor, through=late)

    assert early not in await naive_page(engine, naive_cursor)  # ...and never see it
    served = while_open + after_commit
    assert (served.count(early), served.count(late)) == (1, 1)
    assert served.index(early) < served.index(late)
    assert await reader.feed(cursor, 10) == ([], cursor)


# PostgreSQL only: SQLite commits in position order.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_concurrent_writers_that_commit_in_any_order_are_each_served_once(
    reader: SessionReader, backend: str, database_url: str, store: SessionStore, engine: AsyncEngine
) -> None:
    await committed_session(store)
    _, cursor = await drain(reader, None, through=await latest(engine))
    committed: list[int] = []
    rolled_back: list[int] = []
    writing = True
    chance = random.Random(7)

    async def writer(conn: asyncpg.Connection) -> None:
        for attempt in range(25):
            transaction = conn.transaction()
            await transaction.start()
            position = await insert_orphan(conn)
            await asyncio.sleep(chance.uniform(0, 0.02))  # commit late, out of position order
            if attempt % 5 == 4:
                await transaction.rollback()
                rolled_back.append(position)
            else:
                await transaction.commit()
                committed.append(position)

    async def follow() -> list[int]:
        nonlocal cursor
        served: list[int] = []
        deadline = time.monotonic() + 30
        # Until the writers are done and every committed row was served (a transaction
        # elsewhere in the cluster can hold the feed back a while; it must not lose rows).
        while writing or not set(committed) <= set(served):
            assert time.monotonic() < deadline, "the feed never served every committed row"
            page, cursor = await reader.feed(cursor, 7)
            served += [event.position for event in page]
            await asyncio.sleep(0.002)
        rest, cursor = await drain(reader, cursor)
        return served + rest

    async with connections(database_url, 6) as writers:
        following = asyncio.create_task(follow())
        await asyncio.gather(*(writer(conn) for conn in writers))
        writing = False
        served = await following

    assert len(served) == len(set(served)), "a row was served twice"
    assert set(served) == set(committed)
    assert not set(served) & set(rolled_back)


# PostgreSQL only: SQLite commits in position order.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_long_open_transaction_holds_the_feed_back_without_losing_rows(
    reader: SessionReader, backend: str, database_url: str, store: SessionStore, engine: AsyncEngine
) -> None:
    """The price of never skipping: rows wait for the older transactions to end."""
    await committed_session(store)
    _, cursor = await drain(reader, None, through=await latest(engine))
    async with connections(database_url, 1) as (idle,):
        transaction = idle.transaction()
        await transaction.start()
        await idle.fetchval("SELECT pg_current_xact_id()")  # holds a transaction id
        session_id, _ = await committed_session(store)
        held_back, cursor = await drain(reader, cursor)
        await transaction.rollback()
    released, cursor = await drain(reader, cursor, through=await latest(engine))
    assert held_back == []
    assert released == [row["position"] for row in await stored_rows(engine, session_id)]


async def test_a_feed_page_carries_every_column_but_the_txid(
    reader: SessionReader, store: SessionStore, engine: AsyncEngine
) -> None:
    await committed_session(store)  # a feed is drained to a row: have one, run first or not
    _, before = await drain(reader, None, through=await latest(engine))
    session_id, _ = await committed_session(store)
    rows = await stored_rows(engine, session_id)
    deadline = time.monotonic() + 30
    while True:  # a transaction anywhere in the cluster may hold the feed back a while (drain)
        page, _ = await reader.feed(before, 10)
        if len(page) >= len(rows) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [event.position for event in page] == [row["position"] for row in rows]
    assert page[0].session_id == session_id
    assert page[0].recorded_at - rows[0]["recorded_at"] == timedelta(0)


# ---------------------------------------------------------------- paging a history


async def paged(reader: SessionReader, session_id: str, size: int) -> list[list[Any]]:
    pages: list[list[Any]] = []
    after: int | None = None
    while True:
        page = await reader.history_page(session_id, after, size)
        assert page is not None
        events, cursor = page
        pages.append(events)
        if cursor is None:
            return pages
        assert cursor == str(events[-1].position)
        after = int(cursor)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 500])
async def test_pages_tile_the_history_and_judge_records_as_the_whole_does(
    reader: SessionReader, store: SessionStore, engine: AsyncEngine, size: int
) -> None:
    """Every page size, including pages that stop between a record and the end of its
    attempt (size 4 ends on the failed attempt's record; its release is on the next page)."""
    session_id = await eventful_session(store)
    whole = await reader.session_events(session_id)
    assert whole is not None
    pages = await paged(reader, session_id, size)
    assert [event for page in pages for event in page] == whole
    assert all(len(page) == size for page in pages[:-1])
    assert len(pages[-1]) <= size


async def test_a_page_beyond_the_end_is_empty_and_an_unknown_session_has_none(
    reader: SessionReader, store: SessionStore, engine: AsyncEngine
) -> None:
    session_id, _ = await committed_session(store)
    whole = await reader.session_events(session_id)
    assert whole is not None
    assert await reader.history_page(session_id, whole[-1].position, 10) == ([], None)
    assert await reader.history_page("0190a5b0-0000-7000-8000-000000000000", None, 10) is None
    assert await reader.history_page("not-a-session", None, 10) is None
