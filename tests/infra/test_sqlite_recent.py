"""The SQLite writer keeps the sessions it wrote last (infra/sqlite_recent.py) instead of
reading each back: what it keeps must be exactly what a read would find, whoever wrote."""

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.decisions import ClaimGranted
from baton.domain.events import ReleaseCause, RequestRefused, TurnCommitted
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.outcomes import Finished
from baton.domain.ports import SessionStore
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.state import SessionState, SessionStatus
from baton.infra.audit import verify
from baton.infra.chain import ChainHeads
from baton.infra.settings import Settings
from baton.infra.sqlite_recent import RecentSessions
from baton.infra.sqlite_store import SELECT_SESSION, SqliteSessionStore, loaded_row
from baton.infra.sqlite_values import db_id, state_from
from baton.infra.tables import sessions
from tests import store_calls as calls
from tests.infra.test_store import lease, new_id, new_token, now

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the writer is SQLite's


@pytest.fixture
def reader(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A connection of its own to the run's SQLite file: what a read finds there."""
    path = settings.database_url.split(":///", 1)[1]
    conn = sqlite3.connect(path)
    yield conn
    conn.close()


def recent_of(store: SessionStore) -> RecentSessions:
    assert isinstance(store, SqliteSessionStore)
    return store._recent  # what the writer keeps is what is under test


def read(reader: sqlite3.Connection, session_id: SessionId) -> tuple[SessionState, ChainHeads]:
    found = reader.execute(SELECT_SESSION, (db_id(session_id),)).fetchone()
    row = loaded_row(found)
    return state_from(row), ChainHeads.of(row)


def assert_kept_as_read(
    store: SessionStore, reader: sqlite3.Connection, session_id: SessionId
) -> None:
    kept = recent_of(store).get(db_id(session_id))
    assert kept is not None, "the writer dropped a session it had just written"
    assert kept == read(reader, session_id)


@SQLITE
async def test_what_the_writer_keeps_is_what_a_read_finds_turn_after_turn(
    store: SessionStore, reader: sqlite3.Connection, engine: AsyncEngine
) -> None:
    session_id = new_id()
    granted = await calls.start(store, session_id, {"message": "hi"}, now(), lease())
    assert_kept_as_read(store, reader, session_id)
    token = new_token()
    outcome = Finished("ok", state={"n": [1, 2.5, None, "é"]})
    committed = await calls.commit(
        store, session_id, granted.claim, outcome, digest_token(token), now(), consumed=None
    )
    assert isinstance(committed, TurnCommitted)
    assert_kept_as_read(store, reader, session_id)

    # A refusal moves the session's side chain: what was kept is dropped, and the next
    # transaction reads the heads afresh.
    refused = await calls.claim(store, session_id, digest_token("forged"), {}, now(), lease())
    assert isinstance(refused, Refusal)
    assert recent_of(store).get(db_id(session_id)) in (None, read(reader, session_id))

    for turn in range(2, 5):
        claimed = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
        assert isinstance(claimed, ClaimGranted)
        assert_kept_as_read(store, reader, session_id)
        if turn == 2:  # a refusal the API records on its own, before any command
            await store.refuse(
                RequestRefused(
                    session_id=session_id,
                    turn=None,
                    reason=RefusalReason.STALE_TOKEN,
                    presented_id=str(session_id),
                    at=now(),
                )
            )
            assert recent_of(store).get(db_id(session_id)) in (None, read(reader, session_id))
        await calls.append_record(store, session_id, claimed.claim, {"turn": turn}, now())
        assert_kept_as_read(store, reader, session_id)
        if turn == 3:  # a released turn leaves the token as it was
            await calls.release(store, session_id, claimed.claim, ReleaseCause.FAILED, "x", now())
            assert_kept_as_read(store, reader, session_id)
            continue
        issued = new_token()
        outcome = Finished({"turn": turn}, state={"n": turn})
        await calls.commit(
            store,
            session_id,
            claimed.claim,
            outcome,
            digest_token(issued),
            now(),
            consumed=digest_token(token),
        )
        token = issued
        assert_kept_as_read(store, reader, session_id)
    await calls.cancel(store, session_id, digest_token(token), now())
    assert recent_of(store).get(db_id(session_id)) in (None, read(reader, session_id))
    await calls.close(store, session_id, digest_token(token), now())
    assert recent_of(store).get(db_id(session_id)) in (None, read(reader, session_id))
    # Every link was made onto heads the writer kept: the chains hold.
    assert [broken async for broken in verify(engine, [session_id])] == []


@SQLITE
async def test_a_write_through_another_connection_is_seen_at_once(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session_id = new_id()
    await calls.start(store, session_id, {}, now(), lease())
    assert recent_of(store).get(db_id(session_id)) is not None
    async with engine.begin() as conn:  # as an operator's command or another process would
        await conn.execute(
            update(sessions).where(sessions.c.session_id == session_id).values(owner="someone")
        )
    loaded = await store.load(session_id)
    assert loaded is not None
    assert loaded.owner == "someone"


@SQLITE
async def test_a_state_handed_out_and_mutated_changes_nothing_kept(store: SessionStore) -> None:
    session_id = new_id()
    granted = await calls.start(store, session_id, {}, now(), lease())
    outcome = Finished("ok", state={"items": [1]})
    await calls.commit(
        store, session_id, granted.claim, outcome, digest_token(new_token()), now(), consumed=None
    )
    first = await store.load(session_id)
    assert first is not None
    assert isinstance(first.state, dict)
    first.state["items"].append(2)  # type: ignore[union-attr]
    again = await store.load(session_id)
    assert again is not None
    assert again.state == {"items": [1]}


@SQLITE
async def test_a_transaction_that_fails_drops_the_session_and_its_retry_reads_afresh(
    store: SessionStore, reader: sqlite3.Connection
) -> None:
    """A failed transaction's writes are rolled back, so what it would have kept is not kept.
    Made to fail here by a kept version one behind the row's: the claim's event takes a seq
    the row already has, the unique key refuses it, and the retry finds the row as it is."""
    session_id = new_id()
    granted = await calls.start(store, session_id, {}, now(), lease())
    token = new_token()
    await calls.commit(
        store, session_id, granted.claim, Finished("ok"), digest_token(token), now(), consumed=None
    )
    state, heads = read(reader, session_id)
    behind = replace(state, version=state.version - 1)
    recent_of(store).keep(db_id(session_id), behind, heads, state_text="null", outcome_text="null")
    claimed = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert isinstance(claimed, ClaimGranted)
    assert claimed.claim.seq == state.version + 1
    assert_kept_as_read(store, reader, session_id)


def a_state(key: str) -> SessionState:
    at = now()
    return SessionState(
        session_id=SessionId(key),
        version=1,
        turn=0,
        status=SessionStatus.IDLE,
        token_digest=None,
        claim=None,
        lease=None,
        state=None,
        last_outcome=None,
        created_at=at,
        updated_at=at,
    )


def test_the_oldest_written_goes_first_when_full() -> None:
    recent = RecentSessions(capacity=2)
    for key in ("a", "b", "a", "c"):
        recent.keep(key, a_state(key), ChainHeads(), state_text="null", outcome_text="null")
    assert len(recent) == 2
    assert recent.get("b") is None  # "a" was written again after "b"
    assert recent.get("a") is not None
    assert recent.get("c") is not None


def test_a_commit_by_another_connection_forgets_everything(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    mine, theirs = sqlite3.connect(path, isolation_level=None), sqlite3.connect(path)
    theirs.execute("CREATE TABLE t (k INTEGER)")
    theirs.commit()
    recent = RecentSessions()
    recent.began(mine)
    recent.keep("a", a_state("a"), ChainHeads(), state_text="null", outcome_text="null")
    recent.began(mine)  # nobody else wrote: kept
    assert len(recent) == 1
    mine.execute("INSERT INTO t VALUES (1)")  # its own writes leave the version alone
    recent.began(mine)
    assert len(recent) == 1
    theirs.execute("INSERT INTO t VALUES (2)")
    theirs.commit()
    recent.began(mine)
    assert len(recent) == 0
    mine.close()
    theirs.close()
