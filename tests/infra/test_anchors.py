"""Anchors catch what plain verification cannot: history rewritten consistently, every later
hash and the projection's heads recomputed. On both backends."""

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.decisions import ClaimGranted
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.outcomes import Finished
from baton.domain.ports import SessionStore
from baton.infra.anchor_file import Anchor, AnchorRefused, read_anchor
from baton.infra.anchors import Finding, check_against, write_anchor
from baton.infra.audit import verify
from baton.infra.chain import ChainHeads, follow, in_chain_order
from baton.infra.database import create_engine
from baton.infra.migrate import upgrade_to_head
from baton.infra.retention import prune_sessions
from baton.infra.settings import Settings
from baton.infra.stores import open_store
from baton.infra.tables import events, sessions, side_chains
from tests import store_calls as calls
from tests.databases import fresh_database
from tests.infra.test_audit import five_turns
from tests.infra.test_store import committed_session, lease, new_token, now


@pytest.fixture
async def scratch(backend: str, tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, SessionStore]]:
    with fresh_database(backend, tmp_path) as url:
        settings = Settings(database_url=url)
        engine = create_engine(settings)
        await upgrade_to_head(engine)
        async with open_store(settings) as store:
            yield engine, store
        await engine.dispose()


async def anchored(engine: AsyncEngine) -> Anchor:
    out = io.StringIO()
    await write_anchor(engine, out, datetime.now(UTC))
    return read_anchor(out.getvalue())


async def findings(engine: AsyncEngine, anchor: Anchor) -> list[Finding]:
    return [found async for found in check_against(engine, anchor)]


async def more_turns(store: SessionStore, session_id: SessionId, token: str, count: int) -> str:
    for _ in range(count):
        granted = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
        assert isinstance(granted, ClaimGranted)
        following = new_token()
        await calls.commit(
            store,
            session_id,
            granted.claim,
            Finished("more"),
            digest_token(following),
            now(),
            consumed=digest_token(token),
        )
        token = following
    return token


async def rewrite(engine: AsyncEngine, session_id: str, *, seq: int | None, data: Any) -> None:
    """What a careful forger does: edit one event (at `seq`, or the first refusal when
    None), then compute every later hash of its chain and the projection's heads again."""
    query = in_chain_order(select(events)).where(events.c.session_id == session_id)
    async with engine.begin() as conn:
        rows = [dict(row._mapping) for row in await conn.execute(query)]
        heads = ChainHeads()
        for row in rows:
            if row["seq"] == seq or (seq is None and row["refusal_seq"] == 1):
                row["data"] = data
            _, row["hash"], heads = follow(heads, row)
            await conn.execute(
                update(events)
                .where(events.c.position == row["position"])
                .values(data=row["data"], hash=row["hash"])
            )
        mine = sessions.c.session_id == session_id
        await conn.execute(update(sessions).where(mine).values(head_hash=heads.head_hash))
        await conn.execute(
            update(side_chains)
            .where(side_chains.c.session_id == session_id)
            .values(refusal_head=heads.refusal_head)
        )


async def test_a_chain_that_grew_since_the_anchor_still_extends_it(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id, token = await with_turns(store, 3)
    await calls.claim(store, session_id, digest_token("forged"), {}, now(), lease())
    anchor = await anchored(engine)
    (entry,) = anchor.entries
    assert (entry.session_id, entry.seq, entry.refusals) == (session_id, 6, 1)
    # More turns, more refusals: the chains go on through the anchored heads.
    await more_turns(store, session_id, token, 2)
    await calls.claim(store, session_id, digest_token("forged"), {}, now(), lease())
    assert await findings(engine, anchor) == []


async def test_a_consistent_rewrite_passes_verify_but_not_the_anchor(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    await five_turns(store)  # untouched: not reported
    anchor = await anchored(engine)
    await rewrite(engine, session_id, seq=2, data={"status": "finished", "output": "forged"})
    assert [broken async for broken in verify(engine)] == []  # the forgery holds together
    (found,) = await findings(engine, anchor)
    assert (found.session_id, found.where, found.pruned) == (session_id, "seq 14", False)
    assert "history up to seq 14 was rewritten" in found.problem


async def test_a_rewritten_refusal_is_caught_in_the_side_chain(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    anchor = await anchored(engine)
    await rewrite(engine, session_id, seq=None, data={"reason": "in-flight"})
    assert [broken async for broken in verify(engine)] == []
    (found,) = await findings(engine, anchor)
    assert (found.session_id, found.where) == (session_id, "refusal 2")


async def test_an_edit_that_kept_the_stored_hashes_is_caught_too(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    """The anchor check computes every link from the events' fields; it never trusts a
    stored hash (plain verify reports this one as well)."""
    engine, store = scratch
    session_id = await five_turns(store)
    anchor = await anchored(engine)
    async with engine.begin() as conn:
        await conn.execute(
            update(events)
            .where(events.c.session_id == session_id, events.c.seq == 3)
            .values(data={"status": "finished", "output": "edited"})
        )
    (found,) = await findings(engine, anchor)
    assert found.where == "seq 14"


async def test_a_session_cut_short_of_the_anchor_is_caught(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    session_id = await five_turns(store)
    anchor = await anchored(engine)
    async with engine.begin() as conn:
        await conn.execute(
            delete(events).where(events.c.session_id == session_id, events.c.seq > 11)
        )
    (found,) = await findings(engine, anchor)
    assert (found.where, found.problem) == (
        "seq 12",
        "seq 12 is missing: the chain stops at 11, short of the anchored seq 14",
    )


async def test_a_pruned_session_is_reported_as_pruned_and_a_deleted_one_as_missing(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    kept, _ = await _closed(store)
    doomed, _ = await _closed(store)
    vanished = await five_turns(store)
    anchor = await anchored(engine)
    done = await prune_sessions(engine, [doomed], datetime(2999, 1, 1, tzinfo=UTC), now(), None)
    assert done.sessions == 1
    async with engine.begin() as conn:
        for table in (events, sessions, side_chains):
            await conn.execute(delete(table).where(table.c.session_id == vanished))
    found = {found.session_id: found for found in await findings(engine, anchor)}
    assert set(found) == {doomed, vanished}
    assert found[doomed].pruned
    assert "pruned since the anchor" in found[doomed].problem
    assert not found[vanished].pruned
    assert found[vanished].problem == "missing: no events, and no prune recorded"
    assert kept not in found


async def with_turns(store: SessionStore, turns: int) -> tuple[SessionId, str]:
    """A session with `turns` committed turns: its id and current token."""
    session_id, token = await committed_session(store)
    return session_id, await more_turns(store, session_id, token, turns - 1)


async def _closed(store: SessionStore) -> tuple[SessionId, str]:
    session_id, token = await with_turns(store, 3)
    await calls.close(store, session_id, digest_token(token), now())
    return session_id, token


def anchor_text(anchor: Anchor) -> str:
    records = [entry.record() for entry in anchor.entries]
    return json.dumps(
        {
            "format": "baton-anchor",
            "version": 1,
            "writtenAt": anchor.written_at,
            "sessions": records,
            "count": len(records),
            "digest": anchor.digest,
        }
    )


async def test_the_anchor_file_reads_back_and_its_digest_is_checked(
    scratch: tuple[AsyncEngine, SessionStore],
) -> None:
    engine, store = scratch
    await five_turns(store)
    await five_turns(store)
    anchor = await anchored(engine)
    assert read_anchor(anchor_text(anchor)) == anchor
    document = json.loads(anchor_text(anchor))

    def refused(changed: dict[str, Any]) -> str:
        with pytest.raises(AnchorRefused) as refusal:
            read_anchor(json.dumps({**document, **changed}))
        return str(refusal.value)

    first, second = document["sessions"]
    edited = {**first, "head": "0" * 64}
    assert "digest does not match" in refused({"sessions": [edited, second]})
    assert "out of order or named twice" in refused({"sessions": [second, first]})
    assert "out of order or named twice" in refused({"sessions": [first, first]})
    assert "wrong type" in refused({"sessions": [{**first, "seq": "14"}, second]})
    assert "wrong type" in refused({"sessions": [{**first, "refusalHead": None}, second]})
    assert "not an object of" in refused({"sessions": [{**first, "extra": 1}, second]})
    assert "version 2" in refused({"version": 2})
    assert "not a baton-anchor file" in refused({"format": "baton-export"})
    assert "list of sessions" in refused({"sessions": {}})
    with pytest.raises(AnchorRefused, match="not JSON"):
        read_anchor(anchor_text(anchor)[:-5])
