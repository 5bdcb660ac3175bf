"""`verify` recomputes every hash chain and names the first broken link, on both backends."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.decisions import ClaimGranted, record_refusal
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.ports import SessionStore
from baton.domain.refusals import RefusalReason, unknown_session
from baton.infra.audit import BrokenLink, verify
from baton.infra.database import create_engine
from baton.infra.migrate import upgrade_to_head
from baton.infra.settings import Settings
from baton.infra.stores import open_store
from baton.infra.tables import events
from tests import store_calls as calls
from tests.databases import fresh_database
from tests.infra.test_projection import varied_sessions
from tests.infra.test_store import committed_session, lease, now


async def broken_links(engine: AsyncEngine, *session_ids: str) -> list[BrokenLink]:
    return [broken async for broken in verify(engine, list(session_ids) or None)]


async def test_every_chain_the_stores_wrote_holds(store: SessionStore, engine: AsyncEngine) -> None:
    """Both stores, every path (PostgreSQL computes links in SQL): all recompute in Python."""
    await varied_sessions(store)
    assert await broken_links(engine) == []


@pytest.fixture
async def scratch(backend: str, tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, SessionStore]]:
    """A database of its own, to tamper with."""
    with fresh_database(backend, tmp_path) as url:
        settings = Settings(database_url=url)
        engine = create_engine(settings)
        await upgrade_to_head(engine)
        async with open_store(settings) as store:
            yield engine, store
        await engine.dispose()


async def five_turns(store: SessionStore) -> SessionId:
    """A session with five committed turns and two refusals."""
    session_id, token = await committed_session(store)
    from baton.domain.outcomes import Finished
    from tests.infra.test_store import new_token

    for _ in range(4):
        granted = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
        assert isinstance(granted, ClaimGranted)
        await calls.append_record(store, session_id, granted.claim, {"n": 1}, now())
        following = new_token()
        await calls.commit(
            store,
            session_id,
            granted.claim,
            Finished("ok"),
            digest_token(following),
            now(),
            consumed=digest_token(token),
        )
        token = following
    for _ in range(2):
        await calls.claim(store, session_id, digest_token("forged"), {}, now(), lease())
    return session_id


async def event_at(engine: AsyncEngine, session_id: str, seq: int) -> dict[str, Any]:
    query = select(events).where(events.c.session_id == session_id, events.c.seq == seq)
    async with engine.connect() as conn:
        return dict((await conn.execute(query)).one()._mapping)


async def test_a_healthy_session_verifies(scratch: tuple[AsyncEngine, SessionStore]) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    assert await broken_links(engine) == []
    assert await broken_links(engine, session_id) == []


async def test_an_edited_payload_is_the_broken_link(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    target = await event_at(engine, session_id, 6)
    async with engine.begin() as conn:
        await conn.execute(
            update(events)
            .where(events.c.position == target["position"])
            .values(data={**target["data"], "output": "rewritten"})
        )
    (broken,) = await broken_links(engine)
    assert (broken.session_id, broken.where, broken.position) == (
        session_id,
        "seq 6",
        target["position"],
    )
    assert "hash does not match" in broken.problem


async def test_a_deleted_event_is_the_broken_link(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    target = await event_at(engine, session_id, 4)
    async with engine.begin() as conn:
        await conn.execute(delete(events).where(events.c.position == target["position"]))
    (broken,) = await broken_links(engine, session_id)
    assert broken.where == "seq 4"
    assert "seq 4 is missing" in broken.problem


async def test_two_swapped_events_are_the_broken_link(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    first, second = await event_at(engine, session_id, 3), await event_at(engine, session_id, 4)
    async with engine.begin() as conn:  # swap their places in the chain
        for position, seq in (
            (first["position"], -1),
            (second["position"], 3),
            (first["position"], 4),
        ):
            await conn.execute(update(events).where(events.c.position == position).values(seq=seq))
    (broken,) = await broken_links(engine, session_id)
    assert broken.where == "seq 3"
    assert broken.position == second["position"]


async def test_a_refusal_edited_or_cut_off_the_end_is_caught(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    query = select(events).where(events.c.session_id == session_id, events.c.refusal_seq == 1)
    async with engine.connect() as conn:
        refusal = dict((await conn.execute(query)).one()._mapping)
    async with engine.begin() as conn:
        await conn.execute(
            update(events)
            .where(events.c.position == refusal["position"])
            .values(data={"reason": "in-flight"})
        )
    (broken,) = await broken_links(engine, session_id)
    assert broken.where == "refusal 1"

    last = await event_at(engine, session_id, 14)  # 2 + 4 turns of claimed, record, committed
    async with engine.begin() as conn:  # restore the refusal, then cut the last event off
        await conn.execute(
            update(events)
            .where(events.c.position == refusal["position"])
            .values(data=refusal["data"])
        )
        await conn.execute(delete(events).where(events.c.position == last["position"]))
    (broken,) = await broken_links(engine, session_id)
    assert broken.where == "projection"
    assert "cut off the end" in broken.problem


async def test_a_standalone_refusal_is_checked_too(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    ghost = SessionId("00000000-0000-7000-8000-000000000000")
    await store.refuse(
        record_refusal(unknown_session(ghost), state=None, presented_id=ghost, at=now())
    )
    assert await broken_links(engine) == []
    async with engine.begin() as conn:
        await conn.execute(
            update(events)
            .where(events.c.session_id.is_(None))
            .values(data={"reason": RefusalReason.STALE_TOKEN.value})
        )
    (broken,) = await broken_links(engine)
    assert (broken.session_id, broken.where) == (None, "refusal")
