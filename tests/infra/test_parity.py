"""Parity: the stores do exactly what the domain decides, row by row.

The PostgreSQL store's hot paths restate the domain's claim, record, renewal and commit
rules in SQL (infra/postgres_sql.py) instead of asking the domain; SQLite runs every
command through the skeleton. Each scripted history below (takeovers, stale and forged
tokens, races lost, leases renewed and lapsed, commits that come too late) is played
against the in-memory store, which is nothing but the domain's decisions and fold, and
against each SQL store, with the same ids, times and tokens. The events, the refusals and
the projection row must come out identical; a fast path whose condition drifts from the
domain's rule shows up here as a difference.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.decisions import ClaimGranted
from domain.events import CloseCause, Lease, ReleaseCause, RequestRefused, SessionEvent
from domain.identifiers import SessionId, TokenDigest, digest_token
from domain.outcomes import Finished, Parked
from domain.ports import SessionStore
from domain.state import Claim, SessionState
from infra.codec import row_to_session_event
from infra.tables import events
from tests import store_calls as calls
from tests.domain.fakes import InMemorySessionStore

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
    second = Script(script.other("second"), script.answers)
    claim = await second.started(store)
    await second.commit(store, claim, None, tokens[0], 2)
    await second.step(calls.close(store, second.session_id, tokens[5], at(3)))  # stale
    await second.step(calls.close(store, second.session_id, tokens[0], at(4)))
    await second.claimed(store, tokens[0], 5)  # closed
    await second.claimed(store, tokens[5], 6)  # stale beats closed
    script.session_id, script.answers = second.session_id, second.answers


HISTORIES = [
    rotations_records_and_a_failed_turn,
    refusals_in_every_order,
    a_lapsed_lease_taken_over,
    a_commit_naming_another_token,
    closing,
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


@pytest.mark.parametrize("history", HISTORIES, ids=[h.__name__ for h in HISTORIES])
async def test_the_store_writes_what_the_domain_decides(
    history: History, store: SessionStore, engine: AsyncEngine
) -> None:
    session_id = SessionId(str(uuid.uuid4()))
    expected, got = Script(session_id, []), Script(session_id, [])
    fake = InMemorySessionStore()
    await history(fake, expected)
    await history(store, got)

    assert got.answers == expected.answers  # every step answered alike
    final = got.session_id
    assert await sql_events(engine, final) == fake.session_events(final)
    assert await sql_refusals(engine, final) == fake_refusals(fake, final)
    sql_state: SessionState | None = await store.load(final)
    assert sql_state == await fake.load(final)


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
