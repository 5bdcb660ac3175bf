"""Parity: the stores do exactly what the domain decides, row by row.

The PostgreSQL store's hot paths restate the domain's claim, record, renewal and commit
rules in SQL (infra/postgres_sql.py) instead of asking the domain; SQLite runs every
command through the skeleton. Each scripted history below (takeovers, stale and forged
tokens, races lost, leases renewed and lapsed, commits that come too late) is played
against the in-memory store, which is nothing but the domain's decisions and fold, and
against each SQL store, with the same ids, times and tokens. The events, the refusals and
the projection row must come out identical; a fast path whose condition drifts from the
domain's rule shows up here as a difference.

Recovery (PROTOCOL section 6) is scripted too: keyed starts and their replays, keyed retries
of continues, cancel requests, reads that recover a turn. There the facts without a seq
(refusals and recoveries) and the recovery rows (the fake's `seals`) must agree as well.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.commands import (
    AppendRecord,
    ClaimTurn,
    CommitTurn,
    ReadSession,
    RenewClaim,
    StartSession,
)
from baton.domain.decisions import ClaimGranted
from baton.domain.events import (
    CloseCause,
    Lease,
    Recovered,
    RecoveredVia,
    ReleaseCause,
    RequestRefused,
    SessionEvent,
)
from baton.domain.identifiers import SessionId, TokenDigest, digest_token
from baton.domain.json import JsonObject
from baton.domain.outcomes import Finished, Parked
from baton.domain.ports import SessionStore
from baton.domain.recovery import Idempotency, Replay, Seal, fingerprint, key_digest
from baton.domain.state import Claim, SessionState
from baton.infra.audit import verify
from baton.infra.codec import event_to_row, row_to_session_event
from baton.infra.planning import seal_row
from baton.infra.tables import events, recovery
from tests import store_calls as calls
from tests.domain.fakes import InMemorySessionStore

pytestmark = pytest.mark.pgbouncer  # the fast paths, through PgBouncer too

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def lease(owner: str, until: float) -> Lease:
    return Lease(owner, at(until))


@dataclass
class Script:
    """One history: a session id, its tokens (digests unique to it: `issued` is unique
    across the table), and the answers each step got (compared too)."""

    session_id: SessionId
    answers: list[object]
    # Sessions besides the final one that the history touched, compared as well.
    others: list[SessionId] = field(default_factory=list)

    @property
    def tokens(self) -> list[TokenDigest]:
        return [digest_token(f"{self.session_id}:{n}") for n in range(8)]

    def other(self, name: str) -> SessionId:
        """Another session's id, the same in every run of the history."""
        return SessionId(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.session_id}/{name}")))

    async def step(self, call: Awaitable[object]) -> object:
        answer = await call
        self.answers.append(_comparable(answer))
        return answer

    async def started(self, store: SessionStore) -> Claim:
        granted = await self.step(
            calls.start(store, self.session_id, {"message": "hi"}, at(0), lease("a", 30))
        )
        assert isinstance(granted, ClaimGranted)
        return granted.claim

    async def claimed(
        self, store: SessionStore, token: TokenDigest | None, when: float, owner: str = "a"
    ) -> Claim | None:
        granted = await self.step(
            calls.claim(
                store, self.session_id, token, {"n": when}, at(when), lease(owner, when + 30)
            )
        )
        return granted.claim if isinstance(granted, ClaimGranted) else None

    async def commit(
        self,
        store: SessionStore,
        claim: Claim,
        consumed: TokenDigest | None,
        issued: TokenDigest,
        when: float,
    ) -> None:
        outcome = Finished({"at": when}, state={"turns": when})
        await self.step(
            calls.commit(
                store, self.session_id, claim, outcome, issued, at(when), consumed=consumed
            )
        )


def _comparable(answer: object) -> object:
    """A store's answer, less what only says how it was computed."""
    if isinstance(answer, ClaimGranted):
        return ("granted", answer.event, answer.state)
    if isinstance(answer, Replay):  # events read along, or not (the driver reads them then)
        return replace(answer, events=None)
    return answer


History = Callable[[SessionStore, Script], Awaitable[None]]


async def rotations_records_and_a_failed_turn(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    first = await script.started(store)
    await script.commit(store, first, None, tokens[0], 1)
    claim = await script.claimed(store, tokens[0], 2)
    assert claim is not None
    await script.step(calls.append_record(store, script.session_id, claim, {"r": 1}, at(3)))
    await script.step(calls.append_record(store, script.session_id, claim, [1, "two"], at(4)))
    await script.commit(store, claim, tokens[0], tokens[1], 5)
    failing = await script.claimed(store, tokens[1], 6)
    assert failing is not None
    await script.step(calls.append_record(store, script.session_id, failing, "void", at(7)))
    await script.step(
        calls.release(store, script.session_id, failing, ReleaseCause.FAILED, "boom", at(8))
    )
    retry = await script.claimed(store, tokens[1], 9)
    assert retry is not None
    parked = Parked({"for": "approval"})  # leaves the handler's state as it was
    await script.step(
        calls.commit(store, script.session_id, retry, parked, tokens[2], at(10), consumed=tokens[1])
    )


async def refusals_in_every_order(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    first = await script.started(store)
    await script.claimed(store, tokens[0], 1)  # no token exists yet: stale
    await script.commit(store, first, None, tokens[0], 2)
    await script.claimed(store, None, 3)  # missing
    await script.claimed(store, tokens[5], 4)  # forged: stale
    held = await script.claimed(store, tokens[0], 5)
    await script.claimed(store, tokens[0], 6)  # the race lost: in-flight
    await script.claimed(store, tokens[5], 7)  # stale beats in-flight
    assert held is not None
    await script.commit(store, held, tokens[0], tokens[1], 8)
    await script.claimed(store, tokens[0], 9)  # consumed: stale
    ghost = script.other("ghost")
    await script.step(calls.claim(store, ghost, tokens[1], {}, at(10), lease("a", 40)))


async def a_lapsed_lease_taken_over(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    first = await script.started(store)
    await script.commit(store, first, None, tokens[0], 1)
    dead = await script.step(
        calls.claim(store, script.session_id, tokens[0], {}, at(2), lease("dead", 5))
    )
    assert isinstance(dead, ClaimGranted)
    await script.claimed(store, tokens[0], 4, owner="b")  # still held: in-flight
    taken = await script.claimed(store, tokens[0], 6, owner="b")  # lapsed: expired + claimed
    assert taken is not None
    # The dead turn comes back too late for everything it tries.
    await script.step(calls.append_record(store, script.session_id, dead.claim, "late", at(7)))
    await script.step(calls.renew(store, script.session_id, dead.claim, lease("dead", 60), at(7)))
    await script.commit(store, dead.claim, tokens[0], tokens[3], 8)
    await script.step(
        calls.release(store, script.session_id, dead.claim, ReleaseCause.FAILED, "late", at(8))
    )
    await script.step(calls.renew(store, script.session_id, taken, lease("b", 90), at(9)))
    await script.claimed(store, tokens[0], 45, owner="c")  # renewed until 90: in-flight
    await script.commit(store, taken, tokens[0], tokens[1], 46)


async def a_commit_naming_another_token(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    first = await script.started(store)
    await script.commit(store, first, None, tokens[0], 1)
    claim = await script.claimed(store, tokens[0], 2)
    assert claim is not None
    await script.commit(store, claim, tokens[4], tokens[1], 3)  # not current: contended
    await script.commit(store, claim, None, tokens[1], 3)  # nor is none
    await script.commit(store, claim, tokens[0], tokens[1], 4)


async def closing(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    first = await script.started(store)
    await script.step(
        calls.release(
            store,
            script.session_id,
            first,
            ReleaseCause.FAILED,
            "start failed",
            at(1),
            close=CloseCause.START_FAILED,
        )
    )
    second = Script(script.other("second"), script.answers, script.others)
    claim = await second.started(store)
    await second.commit(store, claim, None, tokens[0], 2)
    await second.step(calls.close(store, second.session_id, tokens[5], at(3)))  # stale
    await second.step(calls.close(store, second.session_id, tokens[0], at(4)))
    await second.claimed(store, tokens[0], 5)  # closed
    await second.claimed(store, tokens[5], 6)  # stale beats closed
    script.session_id, script.answers = second.session_id, second.answers


# ---------------------------------------------------------------- recovery (PROTOCOL 6)

# The seals' window, far beyond the scripted clock: a server that shares the database sweeps
# the seals whose window has passed by the wall clock, and must not touch these mid-history.
WINDOW = timedelta(days=365 * 30)
INPUT: JsonObject = {"message": "hi"}


def key_of(script: Script) -> str:
    """The history's Idempotency-Key: its own, as keys live as long as their seals."""
    return f"key:{script.tokens[7]}"


def keyed(script: Script, input: JsonObject = INPUT, key: str | None = None) -> Idempotency:
    return Idempotency(key_digest(key or key_of(script)), fingerprint(input))


async def keyed_start(
    store: SessionStore, script: Script, session_id: SessionId, when: float, input: JsonObject
) -> object:
    command = StartSession(
        session_id=session_id,
        at=at(when),
        input=input,
        lease=lease("a", when + 30),
        idempotency=keyed(script, input),
        seal_until=at(when) + WINDOW,
    )
    return await script.step(store.start(command))


async def keyed_claim(
    store: SessionStore,
    script: Script,
    token: TokenDigest,
    when: float,
    idempotency: Idempotency | None,
    input: JsonObject = INPUT,
) -> object:
    command = ClaimTurn(
        session_id=script.session_id,
        at=at(when),
        presented=token,
        input=input,
        lease=lease("a", when + 30),
        idempotency=idempotency,
    )
    return await script.step(store.claim(command))


async def sealed_commit(
    store: SessionStore,
    script: Script,
    claim: Claim,
    consumed: TokenDigest | None,
    issued: TokenDigest,
    when: float,
    idempotency: Idempotency | None,
) -> None:
    """A commit that keeps the issued token sealed, as a running turn's does: under the
    consumed token, or (turn 1 of a keyed start) under the key."""
    lookup = consumed if consumed is not None else key_digest(key_of(script))
    seal = Seal(
        lookup=lookup,
        session_id=script.session_id,
        turn=claim.turn,
        sealed=f"sealed:{issued[:20]}",
        idempotency=idempotency,
        expires_at=at(when) + WINDOW,
    )
    command = CommitTurn(
        session_id=script.session_id,
        at=at(when),
        claim=claim,
        consumed=consumed,
        issued=issued,
        outcome=Finished({"at": when}, state={"turns": when}),
        seal=seal,
    )
    await script.step(store.commit(command))


async def read(
    store: SessionStore,
    script: Script,
    token: TokenDigest | None,
    when: float,
    via: RecoveredVia = RecoveredVia.READ,
) -> None:
    command = ReadSession(session_id=script.session_id, at=at(when), presented=token, via=via)
    await script.step(store.read(command))


async def keyed_starts_and_their_replays(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    granted = await keyed_start(store, script, script.session_id, 0, INPUT)
    assert isinstance(granted, ClaimGranted)
    retry = script.other("retry")
    await keyed_start(store, script, retry, 1, INPUT)  # still running: in-flight
    await keyed_start(store, script, retry, 1, {"message": "other"})  # mismatch
    await sealed_commit(store, script, granted.claim, None, tokens[0], 2, keyed(script))
    await keyed_start(store, script, retry, 3, INPUT)  # replayed
    claim = await keyed_claim(store, script, tokens[0], 4, keyed(script))  # the fast path
    assert isinstance(claim, ClaimGranted)
    await keyed_claim(store, script, tokens[0], 5, keyed(script))  # its own retry: in-flight
    await sealed_commit(store, script, claim.claim, tokens[0], tokens[1], 6, keyed(script))
    await keyed_claim(store, script, tokens[0], 7, keyed(script))  # replayed
    await keyed_claim(store, script, tokens[0], 8, keyed(script, {"message": "else"}))  # mismatch
    await keyed_claim(store, script, tokens[0], 9, keyed(script, key="another-key-of-22-chars"))
    await keyed_claim(store, script, tokens[0], 10, None)  # stale without a key
    await keyed_start(store, script, retry, 11, INPUT)  # the key is spent
    # Past the window, the consumed token replays nothing.
    await keyed_claim(store, script, tokens[0], 12 + WINDOW.total_seconds(), keyed(script))
    third = await keyed_claim(store, script, tokens[1], 13, keyed(script))
    assert isinstance(third, ClaimGranted)
    await keyed_claim(store, script, tokens[0], 14, keyed(script))  # its seal erased: stale
    script.others.append(retry)


async def a_failed_keyed_start_frees_its_key(store: SessionStore, script: Script) -> None:
    failing = script.other("failing")
    granted = await keyed_start(store, script, failing, 0, INPUT)
    assert isinstance(granted, ClaimGranted)
    await script.step(
        calls.release(
            store,
            failing,
            granted.claim,
            ReleaseCause.FAILED,
            "boom",
            at(1),
            close=CloseCause.START_FAILED,
        )
    )
    again = await keyed_start(store, script, script.session_id, 2, INPUT)
    assert isinstance(again, ClaimGranted)
    await sealed_commit(store, script, again.claim, None, script.tokens[0], 3, keyed(script))
    script.others.append(failing)


async def cancel_requests(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    first = await script.started(store)
    await script.step(calls.cancel(store, script.session_id, tokens[0], at(1)))  # none yet
    await script.commit(store, first, None, tokens[0], 2)
    await script.step(calls.cancel(store, script.session_id, tokens[0], at(3)))  # idle
    claim = await script.claimed(store, tokens[0], 4)
    assert claim is not None
    await script.step(calls.cancel(store, script.session_id, tokens[0], at(5)))
    await script.step(calls.cancel(store, script.session_id, tokens[0], at(6)))  # asked once
    await script.step(calls.cancel(store, script.session_id, tokens[5], at(7)))  # stale
    await script.step(calls.cancel(store, script.session_id, None, at(7)))  # missing
    await script.step(calls.append_record(store, script.session_id, claim, "r", at(8)))
    await script.step(
        calls.release(store, script.session_id, claim, ReleaseCause.CANCELLED, "stop", at(9))
    )
    retry = await script.claimed(store, tokens[0], 10)
    assert retry is not None
    await script.step(calls.cancel(store, script.session_id, tokens[0], at(11)))
    await script.commit(store, retry, tokens[0], tokens[1], 12)  # the commit clears it
    await script.step(calls.close(store, script.session_id, tokens[1], at(13)))
    await script.step(calls.cancel(store, script.session_id, tokens[1], at(14)))  # closed
    ghost = script.other("ghost")
    await script.step(calls.cancel(store, ghost, tokens[1], at(15)))


async def reads_that_recover(store: SessionStore, script: Script) -> None:
    tokens = script.tokens
    first = await script.started(store)
    await read(store, script, tokens[0], 1)  # no token exists yet: stale
    await script.commit(store, first, None, tokens[0], 2)
    await read(store, script, tokens[0], 3)  # current
    await read(store, script, None, 3)  # missing
    claim = await script.claimed(store, tokens[0], 4)
    assert claim is not None
    await read(store, script, tokens[0], 5)  # never in-flight
    await sealed_commit(store, script, claim, tokens[0], tokens[1], 6, None)
    await read(store, script, tokens[0], 7)  # recovered
    await read(store, script, tokens[0], 8, RecoveredVia.EVENTS)  # recovered
    await read(store, script, tokens[5], 9)  # forged
    await read(store, script, tokens[0], 10 + WINDOW.total_seconds())  # past the window
    await read(store, script, tokens[1], 11)
    next_claim = await script.claimed(store, tokens[1], 12)
    assert next_claim is not None
    await read(store, script, tokens[0], 13)  # its seal erased: stale
    await sealed_commit(store, script, next_claim, tokens[1], tokens[2], 14, None)
    await read(store, script, tokens[1], 15)  # recovers turn 3
    await script.step(calls.close(store, script.session_id, tokens[2], at(16)))
    await read(store, script, tokens[2], 17)  # closed
    await read(store, script, tokens[1], 17)  # closed too, to the consumed token's holder


async def two_principals(store: SessionStore, script: Script) -> None:
    """Alice's session, which Bob cannot claim or read even with its current token: the one-
    statement claim must refuse him as the domain does, and every event names its cause."""
    alice, bob, tokens, sid = "key:alice", "key:bob", script.tokens, script.session_id
    granted = await script.step(
        store.start(
            StartSession(session_id=sid, at=at(0), input={}, lease=lease("a", 30), principal=alice)
        )
    )
    assert isinstance(granted, ClaimGranted)
    first = granted.claim
    await script.step(
        store.append_record(
            AppendRecord(session_id=sid, at=at(1), claim=first, record="r", principal=alice)
        )
    )
    await script.step(
        store.commit(
            CommitTurn(
                session_id=sid,
                at=at(2),
                claim=first,
                consumed=None,
                issued=tokens[0],
                outcome=Finished({"n": 1}),
                principal=alice,
            )
        )
    )
    for who, when in ((bob, 3), (alice, 4)):
        claimed = await script.step(
            store.claim(
                ClaimTurn(
                    session_id=sid,
                    at=at(when),
                    presented=tokens[0],
                    input={},
                    lease=lease("a", when + 30),
                    principal=who,
                )
            )
        )
    assert isinstance(claimed, ClaimGranted)
    await script.step(
        store.renew(
            RenewClaim(
                session_id=sid,
                at=at(5),
                claim=claimed.claim,
                lease=lease("a", 60),
                principal=alice,
            )
        )
    )
    await script.step(
        store.commit(
            CommitTurn(
                session_id=sid,
                at=at(6),
                claim=claimed.claim,
                consumed=tokens[0],
                issued=tokens[1],
                outcome=Finished({"n": 2}),
                principal=alice,
            )
        )
    )
    for who in (bob, alice):
        await script.step(
            store.read(ReadSession(session_id=sid, at=at(7), presented=tokens[1], principal=who))
        )


HISTORIES = [
    rotations_records_and_a_failed_turn,
    refusals_in_every_order,
    a_lapsed_lease_taken_over,
    a_commit_naming_another_token,
    closing,
    keyed_starts_and_their_replays,
    a_failed_keyed_start_frees_its_key,
    cancel_requests,
    reads_that_recover,
    two_principals,
]


async def sql_events(engine: AsyncEngine, session_id: SessionId) -> list[SessionEvent]:
    query = (
        select(events)
        .where(events.c.session_id == session_id, events.c.seq.is_not(None))
        .order_by(events.c.seq)
    )
    async with engine.connect() as conn:
        return [row_to_session_event(row._mapping) for row in await conn.execute(query)]


async def sql_refusals(engine: AsyncEngine, session_id: SessionId) -> list[object]:
    query = (
        select(events.c.refusal_seq, events.c.data, events.c.recorded_at)
        .where(events.c.session_id == session_id, events.c.kind == "refused")
        .order_by(events.c.refusal_seq)
    )
    async with engine.connect() as conn:
        return [(row.data["reason"], row.recorded_at) for row in await conn.execute(query)]


def fake_refusals(fake: InMemorySessionStore, session_id: SessionId) -> list[object]:
    refused = [e for e in fake.refusals() if e.session_id == session_id]
    return [(event.reason.value, event.at) for event in refused]


async def sql_side_events(engine: AsyncEngine, session_id: SessionId) -> list[object]:
    """The session's facts without a seq (refusals and recoveries), in their chain's order."""
    query = (
        select(events.c.kind, events.c.turn, events.c.data, events.c.recorded_at)
        .where(events.c.session_id == session_id, events.c.seq.is_(None))
        .order_by(events.c.refusal_seq)
    )
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(query)]


def fake_side_events(fake: InMemorySessionStore, session_id: SessionId) -> list[object]:
    side = [event for event in fake.events if isinstance(event, RequestRefused | Recovered)]
    rows = [event_to_row(event) for event in side if event.session_id == session_id]
    return [(row["kind"], row["turn"], row["data"], row["recorded_at"]) for row in rows]


async def sql_seals(engine: AsyncEngine, session_id: SessionId) -> list[dict[str, Any]]:
    query = select(recovery).where(recovery.c.session_id == session_id).order_by(recovery.c.lookup)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


def fake_seals(fake: InMemorySessionStore, session_id: SessionId) -> list[dict[str, Any]]:
    kept = [seal_row(seal) for seal in fake.seals.values() if seal.session_id == session_id]
    return sorted(kept, key=lambda row: str(row["lookup"]))


async def compare(
    engine: AsyncEngine,
    store: SessionStore,
    fake: InMemorySessionStore,
    got: Script,
    expected: Script,
) -> None:
    """A history played against a SQL store left what it left in the in-memory one."""
    assert got.answers == expected.answers  # every step answered alike
    assert got.others == expected.others
    for session in (got.session_id, *got.others):
        assert await sql_events(engine, session) == fake.session_events(session)
        assert await sql_refusals(engine, session) == fake_refusals(fake, session)
        assert await sql_side_events(engine, session) == fake_side_events(fake, session)
        assert await sql_seals(engine, session) == fake_seals(fake, session)
        sql_state: SessionState | None = await store.load(session)
        assert sql_state == await fake.load(session)
    # And every link the SQL computed is the one `baton verify` computes again.
    assert [broken async for broken in verify(engine, [got.session_id, *got.others])] == []


@pytest.mark.parametrize("history", HISTORIES, ids=[h.__name__ for h in HISTORIES])
async def test_the_store_writes_what_the_domain_decides(
    history: History, store: SessionStore, engine: AsyncEngine
) -> None:
    session_id = SessionId(str(uuid.uuid4()))
    expected, got = Script(session_id, []), Script(session_id, [])
    fake = InMemorySessionStore()
    await history(fake, expected)
    await history(store, got)

    await compare(engine, store, fake, got, expected)


async def test_a_refusal_that_names_no_session_is_recorded_alike(
    store: SessionStore, engine: AsyncEngine
) -> None:
    ghost = SessionId(str(uuid.uuid4()))
    fake = InMemorySessionStore()
    for target in (fake, store):
        await calls.claim(target, ghost, digest_token("any"), {}, at(1), lease("a", 30))
    (expected,) = fake.refusals()
    query = select(events).where(events.c.kind == "refused", events.c.session_id.is_(None))
    async with engine.connect() as conn:
        rows = [row._mapping for row in await conn.execute(query)]
    stored = [row for row in rows if row["data"].get("sessionId") == ghost]
    assert len(stored) == 1
    assert isinstance(expected, RequestRefused)
    assert (stored[0]["data"], stored[0]["refusal_seq"]) == (
        {"reason": expected.reason.value, "sessionId": ghost},
        None,
    )
