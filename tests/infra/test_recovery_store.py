"""The store's part in recovery (PROTOCOL section 6): the seals a commit keeps in the
recovery table (outside the hash-chained events), the claims and failed starts that erase
them, reads that recover a turn as a side fact, keyed retries answered from a seal, and the
history a replay or an events read is rebuilt from. What only uses the port (and the
in-memory store's `seals`, the recovery table of the fake) runs on every store."""

import asyncio
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.commands import ClaimTurn, ReadSession, StartSession
from baton.domain.decisions import CancelAnswer, ClaimGranted
from baton.domain.events import (
    CloseCause,
    Lease,
    Recovered,
    RecoveredVia,
    ReleaseCause,
    TurnCommitted,
)
from baton.domain.identifiers import (
    SessionId,
    digest_token,
    mint_token,
    seal_token,
    seal_under_key,
    unseal_token,
)
from baton.domain.json import JsonObject
from baton.domain.outcomes import Finished
from baton.domain.ports import SessionStore
from baton.domain.recovery import Idempotency, ReadAccess, Replay, Seal, fingerprint, key_digest
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.state import Claim
from baton.infra import postgres_store
from baton.infra.planning import seal_row
from baton.infra.postgres_store import PostgresSessionStore
from baton.infra.tables import events, recovery
from tests import store_calls as calls
from tests.conftest import Stored
from tests.databases import EVERY_STORE, MEMORY, POSTGRESQL
from tests.domain.fakes import InMemorySessionStore

WINDOW = timedelta(hours=1)
INPUT: JsonObject = {"message": "hi"}
STALE = Refusal(RefusalReason.STALE_TOKEN, "stale or invalid continuationToken")
IN_FLIGHT = Refusal(RefusalReason.IN_FLIGHT, "a turn is already in flight for this session")
KEY_SPENT = Refusal(
    RefusalReason.STALE_TOKEN, "the session this Idempotency-Key started has moved on"
)

pytestmark = pytest.mark.pgbouncer  # the store contract, through PgBouncer too


def now() -> datetime:
    """Real time: a server sharing the database sweeps seals whose window has passed."""
    return datetime.now(UTC)


def lease() -> Lease:
    return Lease("test", now() + timedelta(seconds=60))


def new_id() -> SessionId:
    return SessionId(str(uuid.uuid4()))


def new_token() -> str:
    return mint_token(secrets.token_bytes)


def new_key() -> str:
    return secrets.token_urlsafe(24)


SealRows = Callable[[SessionId], Awaitable[list[dict[str, Any]]]]
StoredEvents = Callable[[SessionId], Awaitable[list[Stored]]]


@pytest.fixture
def seal_rows(backend: str, store: SessionStore, request: pytest.FixtureRequest) -> SealRows:
    """The recovery rows of a session, by turn: the table's, or the fake's `seals`."""

    async def from_memory(session_id: SessionId) -> list[dict[str, Any]]:
        assert isinstance(store, InMemorySessionStore)
        mine = [seal_row(seal) for seal in store.seals.values() if seal.session_id == session_id]
        return sorted(mine, key=lambda row: row["turn"])

    async def from_table(session_id: SessionId) -> list[dict[str, Any]]:
        engine: AsyncEngine = request.getfixturevalue("engine")
        query = (
            select(recovery).where(recovery.c.session_id == session_id).order_by(recovery.c.turn)
        )
        async with engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    return from_memory if backend == MEMORY else from_table


@dataclass
class Session:
    """A session scripted through the store, with the tokens it was issued, in order."""

    store: SessionStore
    session_id: SessionId
    tokens: list[str]
    key: str | None = None

    @property
    def current(self) -> str:
        return self.tokens[-1]

    async def claim(self, input: JsonObject | None = None) -> Claim:
        granted = await calls.claim(
            self.store, self.session_id, digest_token(self.current), input or INPUT, now(), lease()
        )
        assert isinstance(granted, ClaimGranted), granted
        return granted.claim

    async def commit(
        self, claim: Claim, *, sealed: bool = True, idempotency: Idempotency | None = None
    ) -> Seal | None:
        """Commit `claim`, consuming the current token and, as a running turn does, sealing
        the issued one under it (on a keyed start's turn 1: under the key); the seal kept."""
        consumed = self.current if claim.turn > 1 else None
        issued = new_token()
        seal = None
        if sealed and consumed is not None:
            seal = Seal(
                lookup=digest_token(consumed),
                session_id=self.session_id,
                turn=claim.turn,
                sealed=seal_token(issued, consumed),
                idempotency=idempotency,
                expires_at=now() + WINDOW,
            )
        elif sealed and self.key is not None:
            seal = Seal(
                lookup=key_digest(self.key),
                session_id=self.session_id,
                turn=claim.turn,
                sealed=seal_under_key(issued, self.key),
                idempotency=Idempotency(key_digest(self.key), fingerprint(INPUT)),
                expires_at=now() + WINDOW,
            )
        committed = await calls.commit(
            self.store,
            self.session_id,
            claim,
            Finished({"turn": claim.turn}),
            digest_token(issued),
            now(),
            consumed=digest_token(consumed) if consumed else None,
            seal=seal,
        )
        assert isinstance(committed, TurnCommitted), committed
        self.tokens.append(issued)
        return seal

    async def read(self, token: str, at: datetime | None = None) -> ReadAccess | Refusal:
        command = ReadSession(
            session_id=self.session_id, at=at or now(), presented=digest_token(token)
        )
        return await self.store.read(command)


async def started(store: SessionStore, key: str | None = None) -> tuple[Session, Claim]:
    """A session whose first turn runs (keyed if `key` is given)."""
    session = Session(store, new_id(), [], key)
    command = StartSession(
        session_id=session.session_id,
        at=now(),
        input=INPUT,
        lease=lease(),
        idempotency=Idempotency(key_digest(key), fingerprint(INPUT)) if key else None,
        seal_until=now() + WINDOW if key else None,
    )
    granted = await store.start(command)
    assert isinstance(granted, ClaimGranted), granted
    return session, granted.claim


async def at_turn_two(store: SessionStore, idempotency: Idempotency | None = None) -> Session:
    """Turn 2 committed with a seal: tokens[0] was consumed, tokens[1] is current."""
    session, first = await started(store)
    await session.commit(first)
    await session.commit(await session.claim(), idempotency=idempotency)
    return session


async def kinds(stored_events: StoredEvents, session_id: SessionId) -> list[str]:
    return [event.kind for event in await stored_events(session_id)]


# ---------------------------------------------------------------- what is kept, and erased


@EVERY_STORE
async def test_a_commit_with_a_seal_keeps_exactly_one_recovery_row(
    store: SessionStore, seal_rows: SealRows
) -> None:
    session, first = await started(store)
    assert await seal_rows(session.session_id) == []  # an unkeyed start keeps none
    await session.commit(first)
    assert await seal_rows(session.session_id) == []  # nor does its first commit
    idempotency = Idempotency(key_digest(new_key()), fingerprint(INPUT))
    seal = await session.commit(await session.claim(), idempotency=idempotency)
    assert seal is not None
    assert await seal_rows(session.session_id) == [
        {
            "lookup": digest_token(session.tokens[0]),
            "session_id": session.session_id,
            "turn": 2,
            "sealed": seal_token(session.tokens[1], session.tokens[0]),
            "key_digest": idempotency.key,
            "fingerprint": idempotency.fingerprint,
            "expires_at": seal.expires_at,
        }
    ]


@EVERY_STORE
async def test_a_commit_without_a_seal_keeps_no_row(
    store: SessionStore, seal_rows: SealRows
) -> None:
    session, first = await started(store)
    await session.commit(first)
    await session.commit(await session.claim(), sealed=False)
    assert await seal_rows(session.session_id) == []


@EVERY_STORE
async def test_the_next_claim_erases_the_seal_of_the_turn_before(
    store: SessionStore, seal_rows: SealRows
) -> None:
    session = await at_turn_two(store)
    assert [row["turn"] for row in await seal_rows(session.session_id)] == [2]
    await session.commit(await session.claim())  # turn 3 keeps its own seal...
    assert [row["turn"] for row in await seal_rows(session.session_id)] == [3]
    await session.claim()  # ...until turn 4 is claimed
    assert await seal_rows(session.session_id) == []


@EVERY_STORE
async def test_a_refused_claim_erases_nothing(store: SessionStore, seal_rows: SealRows) -> None:
    session = await at_turn_two(store)
    kept = await seal_rows(session.session_id)
    refused = await calls.claim(
        store, session.session_id, digest_token(session.tokens[0]), INPUT, now(), lease()
    )
    assert refused == STALE
    assert await seal_rows(session.session_id) == kept


@EVERY_STORE
async def test_a_keyed_start_keeps_its_key_seal_with_no_token_until_its_commit(
    store: SessionStore, seal_rows: SealRows
) -> None:
    key = new_key()
    session, first = await started(store, key)
    (waiting,) = await seal_rows(session.session_id)
    assert {field: waiting[field] for field in ("lookup", "turn", "sealed", "key_digest")} == {
        "lookup": key_digest(key),
        "turn": 1,
        "sealed": None,
        "key_digest": key_digest(key),
    }
    assert waiting["fingerprint"] == fingerprint(INPUT)
    await session.commit(first)
    (kept,) = await seal_rows(session.session_id)
    assert (kept["lookup"], kept["turn"], kept["sealed"]) == (
        key_digest(key),
        1,
        seal_under_key(session.tokens[0], key),
    )
    # A claim erases the seals of later turns; the key's seal stays, so that a retry of the
    # start is told the session moved on instead of starting a second one.
    await session.claim()
    assert [row["lookup"] for row in await seal_rows(session.session_id)] == [key_digest(key)]
    retried = await store.start(
        StartSession(
            session_id=new_id(),
            at=now(),
            input=INPUT,
            lease=lease(),
            idempotency=Idempotency(key_digest(key), fingerprint(INPUT)),
            seal_until=now() + WINDOW,
        )
    )
    assert retried == KEY_SPENT


@EVERY_STORE
async def test_a_failed_start_released_with_close_erases_every_seal_and_frees_its_key(
    store: SessionStore, seal_rows: SealRows
) -> None:
    key = new_key()
    session, first = await started(store, key)
    await calls.release(
        store,
        session.session_id,
        first,
        ReleaseCause.FAILED,
        "boom",
        now(),
        close=CloseCause.START_FAILED,
    )
    assert await seal_rows(session.session_id) == []
    again, _ = await started(store, key)  # the key starts a session afresh
    assert again.session_id != session.session_id
    assert [row["session_id"] for row in await seal_rows(again.session_id)] == [again.session_id]


# ---------------------------------------------------------------- reads and retries


@EVERY_STORE
async def test_a_read_with_the_consumed_token_recovers_and_records_it_without_a_version(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    session = await at_turn_two(store)
    before = await store.load(session.session_id)
    assert before is not None
    access = await session.read(session.tokens[0])
    assert isinstance(access, ReadAccess)
    assert access.state == before
    assert access.recovered is not None
    assert access.recovered.sealed is not None
    assert unseal_token(access.recovered.sealed, session.tokens[0]) == session.tokens[1]
    assert await store.load(session.session_id) == before  # a read moves no version
    assert (await kinds(stored_events, session.session_id))[-1] == "recovered"


@EVERY_STORE
async def test_a_read_with_the_current_token_recovers_nothing_and_records_nothing(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    session = await at_turn_two(store)
    written = await kinds(stored_events, session.session_id)
    access = await session.read(session.current)
    assert isinstance(access, ReadAccess)
    assert access.recovered is None
    assert await kinds(stored_events, session.session_id) == written


@EVERY_STORE
async def test_a_read_with_the_consumed_token_is_stale_after_the_window_or_the_next_claim(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    session = await at_turn_two(store)
    assert await session.read(session.tokens[0], at=now() + WINDOW * 2) == STALE
    await session.claim()
    assert await session.read(session.tokens[0]) == STALE
    assert (await kinds(stored_events, session.session_id))[-3:] == [
        "refused",
        "claimed",
        "refused",
    ]


@EVERY_STORE
async def test_a_keyed_retry_with_the_consumed_token_is_answered_from_the_seal(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    key = new_key()
    idempotency = Idempotency(key_digest(key), fingerprint(INPUT))
    session = await at_turn_two(store, idempotency)
    retry = ClaimTurn(
        session_id=session.session_id,
        at=now(),
        presented=digest_token(session.tokens[0]),
        input=INPUT,
        lease=lease(),
        idempotency=idempotency,
    )
    before = await store.load(session.session_id)
    answer = await store.claim(retry)
    assert isinstance(answer, Replay)
    assert (answer.session_id, answer.turn, answer.seal.lookup) == (
        session.session_id,
        2,
        digest_token(session.tokens[0]),
    )
    assert await store.load(session.session_id) == before
    assert (await kinds(stored_events, session.session_id))[-1] == "recovered"
    # PostgreSQL reads the turn's events in the statement that records the recovery.
    turn_two = await store.history(session.session_id, turn=2)
    expected = tuple(turn_two) if isinstance(store, PostgresSessionStore) else None
    assert answer.events == expected
    other_input = Idempotency(key_digest(key), fingerprint({"message": "else"}))
    mismatch = await store.claim(
        ClaimTurn(
            session_id=session.session_id,
            at=now(),
            presented=digest_token(session.tokens[0]),
            input={"message": "else"},
            lease=lease(),
            idempotency=other_input,
        )
    )
    assert isinstance(mismatch, Refusal)
    assert mismatch.reason is RefusalReason.IDEMPOTENCY_MISMATCH


@EVERY_STORE
async def test_a_keyed_start_retried_after_its_commit_is_answered_from_the_seal(
    store: SessionStore,
) -> None:
    key = new_key()
    session, first = await started(store, key)
    retry = StartSession(
        session_id=new_id(),
        at=now(),
        input=INPUT,
        lease=lease(),
        idempotency=Idempotency(key_digest(key), fingerprint(INPUT)),
        seal_until=now() + WINDOW,
    )
    assert await store.start(retry) == IN_FLIGHT  # its first turn still runs
    await session.commit(first)
    answer = await store.start(retry)
    assert isinstance(answer, Replay)
    assert (answer.session_id, answer.turn) == (session.session_id, 1)
    assert answer.seal.sealed == seal_under_key(session.tokens[0], key)
    assert await store.load(retry.session_id) is None  # never a second session


@EVERY_STORE
async def test_a_key_whose_seal_expired_starts_a_new_session(
    store: SessionStore, seal_rows: SealRows
) -> None:
    key = new_key()
    session, first = await started(store, key)
    await session.commit(first)
    (kept,) = await seal_rows(session.session_id)
    later = kept["expires_at"] + timedelta(seconds=1)  # the sweep has not run yet
    fresh = StartSession(
        session_id=new_id(),
        at=later,
        input=INPUT,
        lease=Lease("test", later + timedelta(seconds=60)),
        idempotency=Idempotency(key_digest(key), fingerprint(INPUT)),
        seal_until=later + WINDOW,
    )
    granted = await store.start(fresh)
    assert isinstance(granted, ClaimGranted)
    assert granted.state.session_id == fresh.session_id
    assert [row["session_id"] for row in await seal_rows(fresh.session_id)] == [fresh.session_id]


@EVERY_STORE
async def test_concurrent_keyed_starts_make_exactly_one_session(store: SessionStore) -> None:
    key = new_key()
    idempotency = Idempotency(key_digest(key), fingerprint(INPUT))
    commands = [
        StartSession(
            session_id=new_id(),
            at=now(),
            input=INPUT,
            lease=lease(),
            idempotency=idempotency,
            seal_until=now() + WINDOW,
        )
        for _ in range(20)
    ]
    answers = await asyncio.gather(*(store.start(command) for command in commands))
    granted = [answer for answer in answers if isinstance(answer, ClaimGranted)]
    assert len(granted) == 1
    refused = [answer for answer in answers if not isinstance(answer, ClaimGranted)]
    assert refused == [IN_FLIGHT] * (len(commands) - 1)
    loaded = [await store.load(command.session_id) for command in commands]
    assert sum(state is not None for state in loaded) == 1


# ---------------------------------------------------------------- cancel requests


@EVERY_STORE
async def test_a_cancel_request_is_appended_once_and_an_idle_cancel_appends_nothing(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    session = await at_turn_two(store)
    idle = await calls.cancel(store, session.session_id, digest_token(session.current), now())
    assert isinstance(idle, CancelAnswer)
    assert not idle.pending
    claim = await session.claim()
    asked = await calls.cancel(store, session.session_id, digest_token(session.current), now())
    again = await calls.cancel(store, session.session_id, digest_token(session.current), now())
    assert isinstance(asked, CancelAnswer)
    assert isinstance(again, CancelAnswer)
    assert (asked.pending, again.pending) == (True, True)
    assert asked.state.cancel_requested
    assert again.state == asked.state
    await calls.release(
        store, session.session_id, claim, ReleaseCause.CANCELLED, "cancelled", now()
    )
    written = await kinds(stored_events, session.session_id)
    assert written[-3:] == ["claimed", "cancel-requested", "released"]
    assert written.count("cancel-requested") == 1
    loaded = await store.load(session.session_id)
    assert loaded is not None
    assert (loaded.cancel_requested, loaded.token_digest) == (
        False,
        digest_token(session.current),
    )


# ---------------------------------------------------------------- history


@EVERY_STORE
async def test_history_answers_the_events_after_a_seq_and_of_one_turn(
    store: SessionStore,
) -> None:
    session, first = await started(store)  # seq 1
    await session.commit(first)  # 2
    claim = await session.claim()  # 3
    await calls.append_record(store, session.session_id, claim, "a", now())  # 4
    await calls.append_record(store, session.session_id, claim, "b", now())  # 5
    await session.commit(claim)  # 6
    await session.read(session.tokens[0])  # a recovery: no seq, never in history
    retry = await session.claim()  # 7
    await calls.release(store, session.session_id, retry, ReleaseCause.FAILED, "x", now())  # 8

    def seqs(found: list[Any]) -> list[tuple[int, int]]:
        return [(event.seq, event.turn) for event in found]

    everything = await store.history(session.session_id)
    assert seqs(everything) == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 2), (7, 3), (8, 3)]
    assert seqs(await store.history(session.session_id, after=4)) == [
        (5, 2),
        (6, 2),
        (7, 3),
        (8, 3),
    ]
    assert seqs(await store.history(session.session_id, turn=2)) == [
        (3, 2),
        (4, 2),
        (5, 2),
        (6, 2),
    ]
    assert seqs(await store.history(session.session_id, after=4, turn=2)) == [(5, 2), (6, 2)]
    assert await store.history(session.session_id, after=8) == []
    assert await store.history(session.session_id, turn=9) == []
    assert await store.history(new_id()) == []


# ---------------------------------------------------------------- SQL only: the rows


async def session_rows(engine: AsyncEngine, session_id: SessionId) -> list[dict[str, Any]]:
    query = select(events).where(events.c.session_id == session_id).order_by(events.c.position)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def test_a_recovery_is_a_side_fact_in_the_sessions_side_chain(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session = await at_turn_two(store)
    await calls.claim(store, session.session_id, digest_token("forged"), INPUT, now(), lease())
    access = await store.read(
        ReadSession(
            session_id=session.session_id,
            at=now(),
            presented=digest_token(session.tokens[0]),
            via=RecoveredVia.EVENTS,
        )
    )
    assert isinstance(access, ReadAccess)
    rows = await session_rows(engine, session.session_id)
    side = [(row["kind"], row["seq"], row["refusal_seq"], row["turn"], row["data"]) for row in rows]
    assert side[-2:] == [
        ("refused", None, 1, None, {"reason": "stale-token"}),
        ("recovered", None, 2, None, {"turn": 2, "via": "events"}),
    ]


async def test_the_sealed_token_never_appears_in_the_events(
    store: SessionStore, engine: AsyncEngine
) -> None:
    key = new_key()
    session, first = await started(store, key)
    await session.commit(first)
    idempotency = Idempotency(key_digest(key), fingerprint(INPUT))
    for _ in range(2):
        await session.commit(await session.claim(), idempotency=idempotency)
    await session.read(session.tokens[-2])  # recovered: a side fact
    async with engine.connect() as conn:
        (kept,) = (
            (
                await conn.execute(
                    select(recovery.c.sealed).where(
                        recovery.c.session_id == session.session_id, recovery.c.turn == 3
                    )
                )
            )
            .scalars()
            .all()
        )
    assert kept == seal_token(session.tokens[2], session.tokens[1])
    rows = await session_rows(engine, session.session_id)
    stored = json.dumps([row["data"] for row in rows])
    assert kept not in stored
    assert seal_under_key(session.tokens[0], key) not in stored
    for token in session.tokens:  # no token, in any form but its digest
        assert token not in stored
    assert all("sealedToken" not in row["data"] for row in rows)


async def test_a_recovery_row_names_no_token_in_the_clear(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session = await at_turn_two(store)
    query = select(recovery).where(recovery.c.session_id == session.session_id)
    async with engine.connect() as conn:
        rows = [dict(row._mapping) for row in await conn.execute(query)]
    assert [row["lookup"] for row in rows] == [digest_token(session.tokens[0])]
    text = json.dumps(rows, default=str)
    for token in session.tokens:
        assert token not in text
    assert digest_token(session.tokens[1]) not in text  # only the consumed token's digest


async def test_a_read_racing_the_commit_that_consumes_its_token_is_never_stale(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn commits, consuming the presented token, right after the read has looked
    for a seal under it and before it loads the session's row. The read must see one moment:
    before the commit (in flight, the token current) or after it (recovered), never a row
    that moved on without the seal that explains it, which answered stale-token. On
    PostgreSQL the commit is slotted right after the read's first statement (the row and the
    seal are now one statement, one snapshot; were they ever two again, the commit would land
    between them); elsewhere it runs just before the read (one writer, one snapshot)."""
    session, first = await started(store)
    await session.commit(first)
    running = await session.claim()
    presented = session.current
    commit = session.commit(running)

    if isinstance(store, PostgresSessionStore):
        pending = [commit]

        def then_commit(read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def reading(*args: Any, **kwargs: Any) -> Any:
                found = await read(*args, **kwargs)
                if pending:  # after the read's first statement, whichever it is
                    await pending.pop()  # on another pooled connection, committed here
                return found

            return reading

        for name in ("load", "load_seal", "load_with_seal"):
            monkeypatch.setattr(postgres_store, name, then_commit(getattr(postgres_store, name)))
    else:
        await commit
    access = await session.read(presented)
    assert isinstance(access, ReadAccess), access  # never Refusal(stale-token)
    assert session.current != presented  # the commit did happen


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
async def test_a_replay_of_a_session_pruned_meanwhile_still_records_its_recovery(
    store: SessionStore, engine: AsyncEngine
) -> None:
    """The statement that records a replay's recovery and reads its turn finds no session
    (pruned between the claim and it): the fact stands alone, as a refusal's would."""
    assert isinstance(store, PostgresSessionStore)
    gone = new_id()
    fact = Recovered(session_id=gone, turn=2, via=RecoveredVia.REPLAY, at=now())
    assert await store.record_fact(fact, replays=2) == []
    query = select(events.c.session_id, events.c.refusal_seq, events.c.hash).where(
        events.c.kind == "recovered", events.c.data["sessionId"].as_string() == gone
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    # Named in its data, as an unknown session's refusal is (infra/planning.py's _alone).
    assert [(row.session_id, row.refusal_seq, row.hash is not None) for row in rows] == [
        (None, None, True)
    ]
