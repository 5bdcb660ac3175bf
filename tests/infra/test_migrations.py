"""The migrations build exactly the tables infra/tables.py declares, on both backends."""

import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.commands import ReadSession
from baton.domain.events import (
    Lease,
    RequestRefused,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
)
from baton.domain.identifiers import SessionId, digest_token, mint_token, seal_token, unseal_token
from baton.domain.outcomes import Finished
from baton.domain.recovery import ReadAccess
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.state import SessionState, fold
from baton.infra.audit import check_chains, verify
from baton.infra.chain import ChainHeads
from baton.infra.codec import event_to_row, state_to_row
from baton.infra.database import create_engine, writing
from baton.infra.migrate import alembic_config, current_revision, head_revision, upgrade_to_head
from baton.infra.settings import Settings
from baton.infra.stores import open_database
from baton.infra.tables import DIGEST_LENGTH, events, metadata, recovery, sessions
from tests.databases import fresh_database
from tests.infra.test_store import now


@pytest.fixture
async def empty_engine(backend: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with fresh_database(backend, tmp_path) as url:
        engine = create_engine(Settings(database_url=url))
        yield engine
        await engine.dispose()


async def test_upgrade_head_on_an_empty_database_matches_the_tables(empty_engine) -> None:  # type: ignore[no-untyped-def]
    assert await current_revision(empty_engine) is None
    await upgrade_to_head(empty_engine)

    async with empty_engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )
    assert differences == []
    assert await current_revision(empty_engine) == head_revision()


def _predicate_text(text: str | None) -> str | None:
    """A partial index's predicate, written alike whoever wrote it: PostgreSQL's
    `(consumed IS NOT NULL)`, SQLite's as created, SQLAlchemy's `events.consumed IS NOT NULL`."""
    return None if text is None else re.sub(r"[()\s]|\w+\.", "", text).lower()


def _predicates_in_database(sync: Connection) -> dict[str, str | None]:
    if sync.dialect.name == "sqlite":
        created = sync.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
        return {name: sql.partition(" WHERE ")[2] or None for name, sql in created}
    indexes = sync.exec_driver_sql(
        "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index AS i "
        "JOIN pg_class AS c ON c.oid = i.indexrelid "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
    )
    return {name: predicate for name, predicate in indexes}


async def test_every_index_is_as_partial_as_the_tables_declare(empty_engine) -> None:  # type: ignore[no-untyped-def]
    """compare_metadata does not look at an index's WHERE: a migration that built a full
    index where tables.py declares a partial one (or the other way) is caught here."""
    await upgrade_to_head(empty_engine)
    async with empty_engine.connect() as conn:
        found = await conn.run_sync(_predicates_in_database)
        dialect = conn.dialect
    declared = {
        index.name: index.dialect_options[dialect.name]["where"]
        for table in metadata.tables.values()
        for index in table.indexes
    }
    expected = {
        name: None
        if where is None
        else str(where.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        for name, where in declared.items()
    }
    assert {name: _predicate_text(found[name]) for name in expected} == {
        name: _predicate_text(text) for name, text in expected.items()
    }
    partial = {name for name, where in expected.items() if where is not None}
    assert partial >= {"uq_events_consumed", "uq_events_issued"}  # what 0010 is for


async def test_upgrade_is_idempotent_and_downgrade_removes_every_table(empty_engine) -> None:  # type: ignore[no-untyped-def]
    await upgrade_to_head(empty_engine)
    await upgrade_to_head(empty_engine)  # a restart migrates again: nothing to do

    async with empty_engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) <= {"alembic_version"}


async def test_a_pruned_position_is_never_handed_out_again(empty_engine) -> None:  # type: ignore[no-untyped-def]
    """A feed consumer's cursor may already be past the newest row when it is pruned."""

    await upgrade_to_head(empty_engine)
    row = {
        "kind": "refused",
        "data": {"reason": "unknown-session"},
        "recorded_at": now(),
        "hash": "0" * 64,
    }
    async with writing(empty_engine).begin() as conn:
        await conn.execute(insert(events), [row, row, row])
        newest = (
            (await conn.execute(select(events.c.position).order_by(events.c.position.desc())))
            .scalars()
            .first()
        )
        await conn.execute(delete(events).where(events.c.position == newest))
        await conn.execute(insert(events), [row])
        after = (
            (await conn.execute(select(events.c.position).order_by(events.c.position.desc())))
            .scalars()
            .first()
        )
    assert after > newest


# ---------------------------------------------------------------- 0005: seals leave the events

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEAL_FIELD = "sealedToken"  # where a store before 0005 kept the next token, sealed


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class OldSession:
    """A session as a store at revision 0004 wrote it: its event rows (a commit that
    consumed a token kept the token it issued, sealed, in its data), linked into the hash
    chains over that data, and its projection row (without the columns 0005 adds)."""

    session_id: SessionId
    tokens: list[str] = field(default_factory=list)
    domain_events: list[SessionEvent] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    heads: ChainHeads = field(default_factory=ChainHeads)
    clock: float = 0

    def _tick(self) -> datetime:
        self.clock += 1
        return at(self.clock)

    def _append(self, event: SessionEvent, sealed: str | None = None) -> None:
        row = event_to_row(event)
        if sealed is not None:
            row["data"] = {**row["data"], SEAL_FIELD: sealed}
        row["refusal_seq"] = None
        row["hash"], self.heads = self.heads.append(row)
        self.domain_events.append(event)
        self.rows.append(row)

    @property
    def state(self) -> SessionState:
        return fold(self.domain_events)

    def claim(self) -> None:
        state = self.domain_events and self.state
        at_ = self._tick()
        lease = Lease("old-replica", at_ + timedelta(seconds=30))
        if not state:
            first = SessionStarted(
                session_id=self.session_id, seq=1, turn=1, input={"m": 1}, lease=lease, at=at_
            )
            self._append(first)
            return
        self._append(
            TurnClaimed(
                session_id=self.session_id,
                seq=state.version + 1,
                turn=state.turn + 1,
                input={"m": state.turn + 1},
                lease=lease,
                at=at_,
            )
        )

    def commit(self) -> None:
        state = self.state
        assert state.claim is not None
        consumed = self.tokens[-1] if self.tokens else None
        issued = mint_token(secrets.token_bytes)
        self._append(
            TurnCommitted(
                session_id=self.session_id,
                seq=state.version + 1,
                turn=state.claim.turn,
                consumed=digest_token(consumed) if consumed else None,
                issued=digest_token(issued),
                outcome=Finished({"turn": state.claim.turn}),
                at=self._tick(),
            ),
            sealed=seal_token(issued, consumed) if consumed else None,
        )
        self.tokens.append(issued)

    def refuse(self) -> None:
        refused = RequestRefused(
            session_id=self.session_id,
            turn=None,
            reason=RefusalReason.STALE_TOKEN,
            presented_id=None,
            at=self._tick(),
        )
        row = event_to_row(refused)
        row["refusal_seq"], row["hash"], self.heads = self.heads.refuse(row)
        self.rows.append(row)

    def projection(self) -> dict[str, Any]:
        row = {**state_to_row(self.state), **self.heads.as_row()}
        del row["cancel_requested"]  # added by 0005
        del row["owner"]  # added by 0007
        return row

    def commit_recorded_at(self, turn: int) -> datetime:
        (committed,) = (
            event
            for event in self.domain_events
            if isinstance(event, TurnCommitted) and event.turn == turn
        )
        return committed.at


def old_session(turns: int, *, then_claim: bool = False) -> OldSession:
    session = OldSession(SessionId(str(uuid.uuid4())))
    for _ in range(turns):
        session.claim()
        session.commit()
        session.refuse()  # the side chain is linked again too
    if then_claim:
        session.claim()
    return session


# The columns head no longer has where they were at 0004 (typed as 0004 typed them).
COLUMNS_GONE_SINCE_0004: dict[str, Callable[[], Column[Any]]] = {
    "refusals": lambda: Column("refusals", Integer, nullable=False, server_default="0"),
    "refusal_head": lambda: Column("refusal_head", String(DIGEST_LENGTH), nullable=True),
}


def as_at_0004(conn: Connection, name: str) -> Table:
    """A table as the database at 0004 has it, typed as infra/tables.py types it (SQLite
    reflects neither uuids nor aware times), whatever head has moved since."""
    there = [column["name"] for column in inspect(conn).get_columns(name)]
    head = metadata.tables[name].columns
    columns: list[Column[Any]] = [
        Column(column, head[column].type, primary_key=head[column].primary_key)
        if column in head
        else COLUMNS_GONE_SINCE_0004[column]()
        for column in there
    ]
    return Table(name, MetaData(), *columns)


@pytest.fixture
async def at_0004(backend: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A database at revision 0004, and its URL."""
    with fresh_database(backend, tmp_path) as url:
        engine = create_engine(Settings(database_url=url))
        async with writing(engine).begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0004"))
        yield url, engine
        await engine.dispose()


async def test_0005_moves_the_last_seal_out_of_the_events_and_relinks_the_chains(
    at_0004: tuple[str, AsyncEngine],
) -> None:
    url, engine = at_0004
    resting = old_session(3)  # idle after turn 3: its last seal still recovers turn 3
    moved_on = old_session(2, then_claim=True)  # turn 3 claimed: its seal was spent
    first_only = old_session(1)  # turn 1 consumed no token: nothing was sealed
    old = (resting, moved_on, first_only)
    async with writing(engine).begin() as conn:
        old_events = await conn.run_sync(lambda sync: as_at_0004(sync, "events"))
        old_sessions = await conn.run_sync(lambda sync: as_at_0004(sync, "sessions"))
        for session in old:
            await conn.execute(insert(old_sessions).values(**session.projection()))
            for row in session.rows:
                await conn.execute(insert(old_events).values(**row))
    sealed_before = [row["data"][SEAL_FIELD] for row in resting.rows if SEAL_FIELD in row["data"]]
    assert len(sealed_before) == 2  # turns 2 and 3
    # The rows hold as 0004's chains (verify itself reads the tables of head).
    for session in old:
        chain, side = check_chains(session.rows)
        assert (chain.broken, side.broken) == (None, None)

    assert await upgrade_to_head(engine) == "0004"

    async with engine.connect() as conn:
        data = [
            row.data
            for row in await conn.execute(
                select(events.c.data).where(
                    events.c.session_id.in_([session.session_id for session in old])
                )
            )
        ]
        kept = [dict(row._mapping) for row in await conn.execute(select(recovery))]
    assert len(data) == sum(len(session.rows) for session in old)
    assert all(SEAL_FIELD not in item for item in data)
    assert not any(sealed in json.dumps(data) for sealed in sealed_before)
    assert kept == [
        {
            "lookup": digest_token(resting.tokens[1]),
            "session_id": resting.session_id,
            "turn": 3,
            "sealed": seal_token(resting.tokens[2], resting.tokens[1]),
            "key_digest": None,
            "fingerprint": None,
            "expires_at": resting.commit_recorded_at(3) + timedelta(hours=24),
        }
    ]
    assert [broken async for broken in verify(engine)] == []

    # The moved seal recovers turn 3 for the token it consumed, as the new store reads it.
    async with open_database(Settings(database_url=url)) as database:
        access = await database.store.read(
            ReadSession(
                session_id=resting.session_id,
                at=at(60),
                presented=digest_token(resting.tokens[1]),
            )
        )
        assert isinstance(access, ReadAccess)
        assert access.recovered is not None
        assert access.recovered.sealed is not None
        assert unseal_token(access.recovered.sealed, resting.tokens[1]) == resting.tokens[2]
        spent = await database.store.read(
            ReadSession(
                session_id=moved_on.session_id,
                at=at(60),
                presented=digest_token(moved_on.tokens[0]),
            )
        )
        assert isinstance(spent, Refusal)
        assert spent.reason is RefusalReason.STALE_TOKEN
    assert [broken async for broken in verify(engine)] == []  # the recovery is linked too


async def test_0010_keeps_every_event_and_the_same_unique_rules(
    backend: str, tmp_path: Path
) -> None:
    """0010 turns three unique constraints into partial unique indexes: the events written
    before it stay, and a second use of a token or of a refusal's place is still refused,
    after the upgrade and after a downgrade back to 0009."""
    session = str(uuid.uuid4())
    digests = [secrets.token_hex(32) for _ in range(2)]

    def event(seq: int | None, **columns: Any) -> dict[str, Any]:
        row = {"session_id": session, "seq": seq, "kind": "x", "data": {}, "recorded_at": now()}
        # Every key in every row: an executemany takes its columns from the first row.
        return row | {"consumed": None, "issued": None, "refusal_seq": None} | columns

    before = [
        event(1),  # a start: consumes nothing, issues nothing
        event(2, consumed=digests[0], issued=digests[1]),
        event(3),
        event(None, refusal_seq=1),
        event(None, refusal_seq=2),
    ]
    again = {  # each at a free seq: only the rule under test can refuse it
        "a consumed token": event(7, consumed=digests[0]),
        "an issued token": event(8, issued=digests[1]),
        "a refusal's place": event(None, refusal_seq=2),
    }

    async def refused_twice(conn: Any) -> list[str]:
        taken = []
        for what, row in again.items():
            try:
                async with conn.begin_nested():
                    await conn.execute(insert(events).values(**row))
            except IntegrityError:
                taken.append(what)
        return taken

    with fresh_database(backend, tmp_path) as url:
        engine = create_engine(Settings(database_url=url))
        try:
            async with writing(engine).begin() as conn:
                await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0009"))
                await conn.execute(insert(events), before)
            await upgrade_to_head(engine)
            for step in ("upgraded", "downgraded"):
                async with writing(engine).begin() as conn:
                    rows = (await conn.execute(select(events).order_by(events.c.position))).all()
                    assert [(row.seq, row.consumed, row.refusal_seq) for row in rows] == [
                        (row["seq"], row["consumed"], row["refusal_seq"]) for row in before
                    ], step
                    assert await refused_twice(conn) == list(again), step
                    # Any number of events consume nothing and have no place.
                    await conn.execute(insert(events), [event(10 + n) for n in range(3)])
                    await conn.rollback()
                if step == "upgraded":
                    async with writing(engine).begin() as conn:
                        await conn.run_sync(
                            lambda sync: command.downgrade(alembic_config(sync), "0009")
                        )
        finally:
            await engine.dispose()


async def test_0011_gives_back_the_state_a_handler_stored_and_keeps_what_was_there(
    backend: str, tmp_path: Path
) -> None:
    """0011 makes the projection's JSON columns `json` on PostgreSQL (jsonb renormalised a
    float 1e20 into an integer): a state written after it reads back as written, and a row
    written before it stays readable after the upgrade and after a downgrade back to 0010."""
    written = {"float": 1e20, "tiny": 2.5e-308, "one": 1.0, "text": "é 😀", "n": [1, None]}

    def row(session_id: str) -> dict[str, Any]:
        return {
            "session_id": session_id,
            "version": 1,
            "turn": 1,
            "status": "idle",
            "state": written,
            "last_outcome": {"status": "finished", "output": written},
            "created_at": now(),
            "updated_at": now(),
        }

    async def read(engine: AsyncEngine, session_id: str) -> tuple[Any, Any]:
        query = select(sessions.c.state, sessions.c.last_outcome).where(
            sessions.c.session_id == session_id
        )
        async with engine.connect() as conn:
            found = (await conn.execute(query)).one()
        return found.state, found.last_outcome

    before, after = str(uuid.uuid4()), str(uuid.uuid4())
    with fresh_database(backend, tmp_path) as url:
        engine = create_engine(Settings(database_url=url))
        try:
            async with writing(engine).begin() as conn:
                await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0010"))
                await conn.execute(insert(sessions).values(**row(before)))
            await upgrade_to_head(engine)
            async with writing(engine).begin() as conn:
                await conn.execute(insert(sessions).values(**row(after)))
            state, outcome = await read(engine, after)
            assert (state, outcome["output"]) == (written, written)
            assert isinstance(state["float"], float)  # not jsonb's 100000000000000000000
            old_state, _ = await read(engine, before)
            assert old_state == written  # equal in value, whatever jsonb made of its type
            async with writing(engine).begin() as conn:
                await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0010"))
            assert (await read(engine, after))[0] == written
        finally:
            await engine.dispose()
