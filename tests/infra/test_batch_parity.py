"""Group commit: claims and commits sent together write what each would alone.

The scripted histories of test_parity.py run against the PostgreSQL store in two ways:
one at a time with every claim and commit sent through the batched statements
(infra/postgres_batch_sql.py) as a batch of one, so that each of their conditions meets
every case of the histories; and several copies of each at once, on one lane
(infra/batcher.py), so that writes arriving together go as one statement. Either way every
history must answer, write and project exactly what the domain decides.
"""

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.commands import ClaimTurn, CommitTurn
from baton.domain.decisions import ClaimGranted
from baton.domain.events import TurnCommitted
from baton.domain.identifiers import SessionId
from baton.infra import postgres_store
from baton.infra.batcher import SendAlone
from baton.infra.conflict import Conflict
from baton.infra.planning import Loaded
from baton.infra.postgres_batch import batch_claim, batch_commit
from baton.infra.postgres_store import PostgresSessionStore
from baton.infra.settings import Settings
from baton.infra.stores import Database, open_database
from tests.databases import POSTGRESQL
from tests.domain.fakes import InMemorySessionStore
from tests.infra.test_parity import HISTORIES, History, Script, compare
from tests.pgbouncer import PGBOUNCER

COPIES = 4  # of each history, all at once
ON_POSTGRES = pytest.mark.parametrize("backend", [POSTGRESQL, PGBOUNCER], indirect=True)


async def claim_in_a_batch(conn: Any, command: ClaimTurn) -> ClaimGranted | Loaded | None:
    try:
        (answer,) = await batch_claim(conn, [command])
    except SendAlone as error:  # as the one-session path says it
        raise Conflict(str(error)) from error
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
    batches: dict[str, list[int]] = {"claim": [], "commit": []}

    def counted(name: str, many: Any) -> Any:
        async def send(conn: Any, commands: Sequence[Any]) -> Any:
            batches[name].append(len(commands))
            return await many(conn, commands)

        return send

    monkeypatch.setattr(postgres_store, "batch_claim", counted("claim", postgres_store.batch_claim))
    monkeypatch.setattr(
        postgres_store, "batch_commit", counted("commit", postgres_store.batch_commit)
    )
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

    if lanes == 1:  # writes did go together, claims and commits both
        assert max(batches["claim"]) > 1
        assert max(batches["commit"]) > 1
    else:
        assert batches == {"claim": [], "commit": []}
