"""Group commit: claims, commits and facts without a seq sent together write what each
would alone.

The scripted histories of test_parity.py run against the PostgreSQL store in two ways:
one at a time with every claim, commit, refusal and recovery sent through the batched
statements (infra/postgres_batch_sql.py) as a batch of one, so that each of their
conditions meets every case of the histories; and several copies of each at once, on one lane
(infra/batcher.py), so that writes arriving together go as one statement. Either way every
history must answer, write and project exactly what the domain decides.
"""

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.commands import ClaimTurn, CommitTurn
from baton.domain.decisions import ClaimGranted
from baton.domain.events import Recovered, RecoveredVia, RequestRefused, TurnCommitted
from baton.domain.identifiers import SessionId
from baton.domain.ports import SessionStore
from baton.domain.refusals import RefusalReason
from baton.infra import postgres_store
from baton.infra.audit import verify
from baton.infra.batcher import SendAlone
from baton.infra.conflict import Conflict
from baton.infra.planning import Loaded
from baton.infra.postgres_batch import batch_claim, batch_commit, batch_side
from baton.infra.postgres_store import PostgresSessionStore
from baton.infra.postgres_writes import SideAnswer, SideFact, as_events
from baton.infra.settings import Settings
from baton.infra.stores import Database, open_database
from baton.infra.tables import side_chains
from tests.databases import POSTGRESQL
from tests.domain.fakes import InMemorySessionStore
from tests.infra.test_parity import HISTORIES, History, Script, compare
from tests.infra.test_recovery_store import at_turn_two, new_id, now
from tests.pgbouncer import PGBOUNCER

COPIES = 4  # of each history, all at once
ON_POSTGRES = pytest.mark.parametrize("backend", [POSTGRESQL, PGBOUNCER], indirect=True)


async def claim_in_a_batch(conn: Any, command: ClaimTurn) -> ClaimGranted | Loaded | None:
    try:
        (answer,) = await batch_claim(conn, [command])
    except SendAlone as error:  # as the one-session path says it
        raise Conflict(str(error)) from error
    return answer


async def side_in_a_batch(conn: Any, fact: SideFact) -> SideAnswer:
    (answer,) = await batch_side(conn, [fact])  # nothing in it fails as a whole alone
    return answer


async def commit_in_a_batch(conn: Any, command: CommitTurn) -> TurnCommitted | None:
    try:
        (answer,) = await batch_commit(conn, [command])
    except SendAlone as error:
        raise Conflict(str(error)) from error
    return answer


@ON_POSTGRES
@pytest.mark.parametrize("history", HISTORIES, ids=[h.__name__ for h in HISTORIES])
async def test_the_batched_statements_write_what_the_domain_decides(
    history: History, opened: Database, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_store, "fast_claim", claim_in_a_batch)
    monkeypatch.setattr(postgres_store, "fast_commit", commit_in_a_batch)
    monkeypatch.setattr(postgres_store, "side_alone", side_in_a_batch)
    assert isinstance(opened.store, PostgresSessionStore)
    store = PostgresSessionStore(opened.store.pool, None, lanes=Settings().db_write_lanes)
    session_id = SessionId(str(uuid.uuid4()))
    expected, got = Script(session_id, []), Script(session_id, [])
    fake = InMemorySessionStore()
    await history(fake, expected)
    await history(store, got)
    await compare(engine, store, fake, got, expected)


@ON_POSTGRES
@pytest.mark.parametrize("lanes", [1, 10_000], ids=["one-lane", "lanes-to-spare"])
async def test_writes_sent_together_write_what_the_domain_decides(
    lanes: int, settings: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one lane writes go together; with a lane for every write none waits, so none
    does (BATON_DB_WRITE_LANES reaches the store). Either way the same rows."""
    batches: dict[str, list[int]] = {"claim": [], "commit": [], "side": []}

    def counted(name: str, many: Any) -> Any:
        async def send(conn: Any, commands: Sequence[Any]) -> Any:
            batches[name].append(len(commands))
            return await many(conn, commands)

        return send

    monkeypatch.setattr(postgres_store, "batch_claim", counted("claim", postgres_store.batch_claim))
    monkeypatch.setattr(
        postgres_store, "batch_commit", counted("commit", postgres_store.batch_commit)
    )
    monkeypatch.setattr(postgres_store, "batch_side", counted("side", postgres_store.batch_side))
    runs = [(history, SessionId(str(uuid.uuid4()))) for history in HISTORIES * COPIES]
    fake = InMemorySessionStore()
    expected = [Script(session_id, []) for _, session_id in runs]
    got = [Script(session_id, []) for _, session_id in runs]
    for (history, _), script in zip(runs, expected, strict=True):
        await history(fake, script)
    async with open_database(replace(settings, db_write_lanes=lanes)) as opened:
        store = opened.store
        assert isinstance(store, PostgresSessionStore)
        await asyncio.gather(
            *(history(store, s) for (history, _), s in zip(runs, got, strict=True))
        )
        for script, wanted in zip(got, expected, strict=True):
            await compare(engine, store, fake, script, wanted)

    if lanes == 1:  # writes did go together: claims, commits, refusals and recoveries
        assert max(batches["claim"]) > 1
        assert max(batches["commit"]) > 1
        assert max(batches["side"]) > 1
    else:
        assert batches == {"claim": [], "commit": [], "side": []}


def recovery(session_id: SessionId) -> Recovered:
    return Recovered(session_id=session_id, turn=2, via=RecoveredVia.REPLAY, at=now())


@ON_POSTGRES
async def test_one_batch_links_each_fact_of_a_known_session_and_reads_each_replayed_turn(
    store: SessionStore, engine: AsyncEngine
) -> None:
    """A replay's recovery, a refusal and a recovery of a session that is not there (pruned),
    in one statement: the first two are linked into their side chains (which then verify),
    the replay comes back with its turn's events, and the third is answered unlinked, for
    the store to record standing alone."""
    assert isinstance(store, PostgresSessionStore)
    replayed, refused = await at_turn_two(store), await at_turn_two(store)
    gone = new_id()
    facts = [
        SideFact(recovery(replayed.session_id), replays=2),
        SideFact(
            RequestRefused(
                session_id=refused.session_id,
                turn=None,
                reason=RefusalReason.STALE_TOKEN,
                presented_id=None,
                at=now(),
            )
        ),
        SideFact(recovery(gone), replays=2),
    ]
    async with store.pool.db.acquire() as conn:
        answers = await batch_side(conn, facts)
    assert [linked for linked, _ in answers] == [True, True, False]
    turn_two = await store.history(replayed.session_id, turn=2)
    assert sorted(event.seq for event in as_events(answers[0][1])) == [e.seq for e in turn_two]
    assert answers[1][1] == answers[2][1] == []
    assert [b async for b in verify(engine, [replayed.session_id, refused.session_id])] == []
    async with engine.connect() as conn:
        chains = await conn.execute(
            select(side_chains.c.session_id, side_chains.c.refusals).where(
                side_chains.c.session_id.in_([replayed.session_id, refused.session_id, gone])
            )
        )
        counted = {str(row.session_id): row.refusals for row in chains}
    assert counted == {replayed.session_id: 1, refused.session_id: 1}
