"""The sessions projection is derivable: drop its rows, fold the events, get them back."""

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.decisions import ClaimGranted
from baton.domain.events import CloseCause, ReleaseCause
from baton.domain.identifiers import digest_token
from baton.domain.outcomes import Finished, Parked
from baton.domain.ports import SessionStore
from baton.infra.projection import Rebuilt, check_sessions, rebuild_sessions
from baton.infra.tables import sessions
from tests import store_calls as calls
from tests.infra.test_store import committed_session, lease, new_id, new_token, now


async def snapshot(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(sessions).order_by(sessions.c.session_id))
        return [dict(row._mapping) for row in rows]


async def varied_sessions(store: SessionStore) -> None:
    """Sessions in every state: idle after commits, parked, failed, in flight, closed."""
    session_id, token = await committed_session(store)
    for step in range(3):
        granted = await calls.claim(
            store, session_id, digest_token(token), {"step": step}, now(), lease()
        )
        assert isinstance(granted, ClaimGranted)
        await calls.append_record(store, session_id, granted.claim, {"step": step}, now())
        if step == 1:
            await calls.release(
                store, session_id, granted.claim, ReleaseCause.FAILED, "boom", now()
            )
            continue
        spent, token = token, new_token()
        outcome = Parked({"for": "x"}, state={"n": step}) if step else Finished(step)
        await calls.commit(
            store,
            session_id,
            granted.claim,
            outcome,
            digest_token(token),
            now(),
            consumed=digest_token(spent),
        )
    # A claim that lapses and is taken over (expired), and one left in flight, renewed.
    lapsing = await calls.claim(store, session_id, digest_token(token), {}, now(), lease(seconds=1))
    assert isinstance(lapsing, ClaimGranted)
    later = now() + timedelta(seconds=2)
    held = await calls.claim(store, session_id, digest_token(token), {}, later, lease())
    assert isinstance(held, ClaimGranted)
    await calls.renew(store, session_id, held.claim, lease(seconds=120), now())
    # A refusal that names no session: a row with no session id, which PostgreSQL sorts
    # first when descending (a rebuild that took it for the largest id rebuilt nothing).
    ghost = await calls.claim(store, new_id(), digest_token("x"), {}, now(), lease())
    assert not isinstance(ghost, ClaimGranted)
    failed = await calls.start(store, new_id(), {}, now(), lease())
    await calls.release(
        store,
        failed.state.session_id,
        failed.claim,
        ReleaseCause.FAILED,
        "x",
        now(),
        close=CloseCause.START_FAILED,
    )


async def test_rebuilding_from_events_gives_identical_rows(
    store: SessionStore, engine: AsyncEngine
) -> None:
    await varied_sessions(store)
    before = await snapshot(engine)
    assert before, "the store should hold sessions to rebuild"

    async with engine.begin() as conn:
        await conn.execute(sessions.delete())
    assert await snapshot(engine) == []

    assert await rebuild_sessions(engine) == Rebuilt(len(before), len(before))
    assert await snapshot(engine) == before


async def test_a_healthy_projection_is_left_alone_and_a_wrong_row_is_the_only_one_rewritten(
    store: SessionStore, engine: AsyncEngine
) -> None:
    """A rebuild compares before it writes: nothing differs, nothing is written; one row
    edited, `check_sessions` names it and the rebuild rewrites it alone."""
    await varied_sessions(store)
    before = await snapshot(engine)
    assert await check_sessions(engine) == []
    assert await rebuild_sessions(engine) == Rebuilt(len(before), 0)

    victim = str(before[0]["session_id"])
    async with engine.begin() as conn:
        await conn.execute(
            update(sessions).where(sessions.c.session_id == victim).values(turn=99, state=[1])
        )
    assert await check_sessions(engine) == [victim]
    assert await rebuild_sessions(engine) == Rebuilt(len(before), 1)
    assert await snapshot(engine) == before
    assert await check_sessions(engine) == []
