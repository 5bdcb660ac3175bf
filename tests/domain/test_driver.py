"""The turn driver over the in-memory store: validate, claim, run, commit or release."""

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from baton.domain.driver import TurnDriver, TurnServices
from baton.domain.events import (
    CloseCause,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionClosed,
    TurnReleased,
)
from baton.domain.handler import Turn, TurnHandler
from baton.domain.identifiers import SessionId, digest_token, unseal_token
from baton.domain.json import MAX_DEPTH, JsonObject, JsonValue
from baton.domain.outcomes import Contended, Finished, HandlerOutcome, Parked, StateUpdate
from baton.domain.ports import StoreUnavailable
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.requests import ContinueRequest, StartRequest
from baton.domain.state import SessionStatus
from baton.domain.turn import OpenTurn, TurnFailed, TurnReply
from tests.domain.fakes import FakeClock, InMemorySessionStore, RecordingSink, SeededRandom
from tests.waiting import until

DEEP: object = []
for _ in range(MAX_DEPTH):
    DEEP = [DEEP]  # one level more than a value may hold
SELF_CONTAINED: list[object] = []
SELF_CONTAINED.append(SELF_CONTAINED)  # walked without a bound, it would hang the turn

UNKNOWN_ID = "0190f5a2-1b3c-7d4e-8f60-123456789abc"


@dataclass(frozen=True)
class Started:
    session_id: SessionId
    token: str
    reply: TurnReply


class Harness:
    def __init__(
        self,
        handler: Callable[[Turn], Awaitable[object]],
        store: InMemorySessionStore | None = None,
        *,
        lease_seconds: float = 30.0,
        turn_timeout: float = 300.0,
    ) -> None:
        self.store = store or InMemorySessionStore()
        self.clock = FakeClock()
        services = TurnServices(
            self.store,
            cast(TurnHandler, handler),
            self.clock,
            SeededRandom(),
            lease_seconds=lease_seconds,
            turn_timeout=turn_timeout,
        )
        self.driver = TurnDriver(services)

    async def open_start(self, input: JsonObject | None = None) -> OpenTurn:
        opened = await self.driver.open_start(StartRequest(input or {}))
        assert isinstance(opened, OpenTurn)
        return opened

    async def start(self, input: JsonObject | None = None) -> Started:
        reply = await (await self.open_start(input)).run(RecordingSink())
        assert isinstance(reply, TurnReply)
        assert reply.token is not None
        return Started(reply.session_id, reply.token, reply)

    async def open(
        self, session_id: str, token: str | None, input: JsonObject | None = None
    ) -> OpenTurn | Refusal:
        return await self.driver.open_continue(ContinueRequest(session_id, input or {}, token))

    async def run(
        self, session_id: str, token: str | None, input: JsonObject | None = None
    ) -> TurnReply | TurnFailed:
        opened = await self.open(session_id, token, input)
        assert isinstance(opened, OpenTurn), opened
        return await opened.run(RecordingSink())

    async def refused(self, session_id: str, token: str | None) -> RefusalReason:
        opened = await self.open(session_id, token)
        assert isinstance(opened, Refusal), opened
        return opened.reason


async def scripted(turn: Turn) -> HandlerOutcome:
    """Does what the input says: {"do": "finish" | "park" | "fail", "records": [...]}."""
    records = turn.input.get("records", [])
    assert isinstance(records, list)
    for record in records:
        await turn.record(record)
    action = turn.input.get("do", "finish")
    if action == "fail":
        raise RuntimeError(str(turn.input.get("error", "boom")))
    if action == "park":
        return Parked({"waiting": turn.number}, state=turn.state)
    return Finished({"turn": turn.number, "seen": turn.state}, state={"turns": turn.number})


# ---------------------------------------------------------------- committed turns


async def test_a_start_runs_turn_1_and_issues_the_first_token() -> None:
    harness = Harness(scripted)
    started = await harness.start({"message": "hi"})
    reply = started.reply
    assert (reply.turn, reply.seq) == (1, 2)
    assert reply.outcome == Finished({"turn": 1, "seen": None}, state={"turns": 1})
    assert harness.store.kinds(reply.session_id) == ["started", "committed"]
    state = harness.store.sessions[reply.session_id]
    assert (state.status, state.turn) == (SessionStatus.IDLE, 1)
    assert state.token_digest == digest_token(started.token)


async def test_the_store_never_sees_a_token_only_its_digest() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    second = await harness.run(first.session_id, first.token)
    assert isinstance(second, TurnReply)
    for token in (first.token, second.token):
        assert token is not None
        assert not any(token in repr(event) for event in harness.store.events)
        assert any(digest_token(token) in repr(event) for event in harness.store.events)


async def test_a_continue_with_the_current_token_rotates_it() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    second = await harness.run(first.session_id, first.token, {"do": "finish"})
    assert isinstance(second, TurnReply)
    assert second.turn == 2
    assert second.token is not None
    assert second.token != first.token
    assert await harness.refused(first.session_id, first.token) is RefusalReason.STALE_TOKEN
    third = await harness.run(first.session_id, second.token)
    assert isinstance(third, TurnReply)
    assert third.turn == 3


async def test_a_commit_seals_the_next_token_under_the_one_it_consumed() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    assert harness.store.seals == {}  # an unkeyed turn 1 consumed no token to seal under
    second = await harness.run(first.session_id, first.token, {"do": "finish"})
    assert isinstance(second, TurnReply)
    assert second.token is not None
    (seal,) = harness.store.seals.values()
    assert (seal.lookup, seal.turn, seal.session_id) == (
        digest_token(first.token),
        2,
        first.session_id,
    )
    assert seal.sealed is not None
    assert unseal_token(seal.sealed, first.token) == second.token
    # Kept apart from the event: no committed event carries anything sealed.
    assert all("sealed" not in repr(event) for event in harness.store.committed(first.session_id))
    third = await harness.run(first.session_id, second.token)
    assert isinstance(third, TurnReply)
    (spent_next,) = harness.store.seals.values()  # claiming turn 3 forgot turn 2's seal
    assert spent_next.lookup == digest_token(second.token)


async def test_a_parked_turn_commits_and_rotates_the_token_too() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    parked = await harness.run(first.session_id, first.token, {"do": "park"})
    assert isinstance(parked, TurnReply)
    assert parked.outcome == Parked({"waiting": 2}, state={"turns": 1})
    assert parked.token not in (None, first.token)
    assert await harness.refused(first.session_id, first.token) is RefusalReason.STALE_TOKEN


async def test_an_outcome_that_keeps_the_state_commits_and_leaves_the_state_as_it_was() -> None:
    async def handler(turn: Turn) -> Finished | Parked:
        if turn.number == 1:
            return Finished("first", state={"kept": True})
        return Parked("later")  # state defaults to KEEP

    harness = Harness(handler)
    first = await harness.start()
    second = await harness.run(first.session_id, first.token)
    assert isinstance(second, TurnReply), second
    assert second.token is not None
    assert harness.store.sessions[first.session_id].state == {"kept": True}


async def test_the_handler_sees_its_input_its_number_and_the_previous_state() -> None:
    seen: list[tuple[int, JsonObject, JsonValue]] = []

    async def handler(turn: Turn) -> Finished:
        seen.append((turn.number, turn.input, turn.state))
        return Finished("ok", state={"after": turn.number})

    harness = Harness(handler)
    first = await harness.start({"message": "one"})
    await harness.run(first.session_id, first.token, {"message": "two"})
    assert seen == [(1, {"message": "one"}, None), (2, {"message": "two"}, {"after": 1})]


async def test_a_session_id_in_upper_case_names_the_same_session() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    second = await harness.run(first.session_id.upper(), first.token)
    assert isinstance(second, TurnReply)
    assert second.session_id == first.session_id


async def test_an_open_turn_holds_the_claim_until_it_commits() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    opened = await harness.open(first.session_id, first.token)
    assert isinstance(opened, OpenTurn)
    assert await harness.refused(first.session_id, first.token) is RefusalReason.IN_FLIGHT
    await opened.run(RecordingSink())
    assert await harness.refused(first.session_id, first.token) is RefusalReason.STALE_TOKEN


# ---------------------------------------------------------------- records and deltas


async def test_records_are_appended_during_the_turn_and_returned_and_streamed_with_seq() -> None:
    appended_before_return: list[list[str]] = []
    harness: Harness

    async def handler(turn: Turn) -> Finished:
        await turn.record({"step": 1})
        await turn.delta("thinking")
        await turn.record({"step": 2})
        appended_before_return.append(harness.store.kinds(turn.session_id))
        return Finished("done", state=None)

    harness = Harness(handler)
    sink = RecordingSink()
    reply = await (await harness.open_start()).run(sink)
    assert isinstance(reply, TurnReply)
    assert appended_before_return == [["started", "record", "record"]]
    assert reply.records == [{"step": 1}, {"step": 2}]
    assert sink.records == [(2, {"step": 1}), (3, {"step": 2})]
    assert sink.deltas == ["thinking"]
    assert reply.seq == 4
    appended = [e for e in harness.store.events if isinstance(e, RecordAppended)]
    assert [(e.seq, e.turn, e.record) for e in appended] == [
        (2, 1, {"step": 1}),
        (3, 1, {"step": 2}),
    ]
    assert not any("thinking" in repr(event) for event in harness.store.events)


async def test_records_of_a_failed_turn_are_followed_by_its_release() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    failed = await harness.run(first.session_id, first.token, {"records": [1, 2], "do": "fail"})
    assert isinstance(failed, TurnFailed)
    assert harness.store.kinds(first.session_id)[2:] == ["claimed", "record", "record", "released"]


@pytest.mark.parametrize(
    ("record", "complaint"),
    [
        pytest.param({"at": datetime.now(UTC)}, "datetime is not a JSON value", id="datetime"),
        pytest.param(["a\x00b"], "NUL", id="nul"),
        pytest.param({"loop": SELF_CONTAINED}, "deeper than", id="cyclic"),
    ],
)
async def test_a_record_that_is_not_json_fails_the_turn_before_it_is_appended(
    record: object, complaint: str
) -> None:
    async def handler(turn: Turn) -> Finished:
        await turn.record(cast(JsonValue, record))
        return Finished("unreachable")

    harness = Harness(handler)
    failed = await (await harness.open_start()).run(RecordingSink())
    assert isinstance(failed, TurnFailed)
    assert "record must be a JSON value" in failed.message
    assert complaint in failed.message
    assert "record" not in harness.store.kinds(failed.session_id)


# ---------------------------------------------------------------- failed turns


async def test_a_handler_that_raises_fails_the_turn_and_leaves_the_token_valid() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    failed = await harness.run(first.session_id, first.token, {"do": "fail", "error": "no luck"})
    assert failed == TurnFailed(first.session_id, 2, "no luck")
    events = harness.store.session_events(first.session_id)
    assert harness.store.kinds(first.session_id) == ["started", "committed", "claimed", "released"]
    released = events[-1]
    assert isinstance(released, TurnReleased)
    assert (released.turn, released.cause, released.error) == (2, ReleaseCause.FAILED, "no luck")
    state = harness.store.sessions[first.session_id]
    assert (state.status, state.token_digest) == (SessionStatus.IDLE, digest_token(first.token))

    retry = await harness.run(first.session_id, first.token)
    assert isinstance(retry, TurnReply)
    assert retry.turn == 2
    assert retry.token not in (None, first.token)


async def test_a_failure_without_a_message_is_reported_by_its_type() -> None:
    async def handler(turn: Turn) -> Finished:
        raise KeyError

    harness = Harness(handler)
    failed = await (await harness.open_start()).run(RecordingSink())
    assert isinstance(failed, TurnFailed)
    assert failed.message == "KeyError"


async def test_a_failed_start_closes_the_session_and_no_token_exists() -> None:
    harness = Harness(scripted)
    failed = await (await harness.open_start({"do": "fail"})).run(RecordingSink())
    assert failed == TurnFailed(failed.session_id, 1, "boom")
    sid = failed.session_id
    assert harness.store.kinds(sid) == ["started", "released", "closed"]
    closed = harness.store.session_events(sid)[-1]
    assert isinstance(closed, SessionClosed)
    assert closed.cause is CloseCause.START_FAILED
    state = harness.store.sessions[sid]
    assert (state.status, state.token_digest, state.claim) == (SessionStatus.CLOSED, None, None)
    assert await harness.refused(sid, "any token at all") is RefusalReason.STALE_TOKEN
    assert await harness.refused(sid, None) is RefusalReason.MISSING_TOKEN
    assert harness.store.kinds(sid) == ["started", "released", "closed"]


class NotJson:
    pass


def finished(output: object, state: object = None) -> Finished:
    """A Finished built from values its types forbid, as careless application code can."""
    return Finished(cast(JsonValue, output), state=cast(StateUpdate, state))


def parked(wait: object, state: object = None) -> Parked:
    return Parked(cast(JsonValue, wait), state=cast(StateUpdate, state))


@pytest.mark.parametrize(
    "outcome",
    [
        pytest.param(finished({"tags": {"a", "b"}}), id="set-in-output"),
        pytest.param(finished({"at": datetime(2025, 1, 1, tzinfo=UTC)}), id="datetime-in-output"),
        pytest.param(finished({1: "int key"}), id="non-string-key"),
        pytest.param(finished(("a", "tuple")), id="tuple-output"),
        pytest.param(finished(b"bytes"), id="bytes-output"),
        pytest.param(parked([NotJson()]), id="object-in-wait"),
        pytest.param(finished("ok", state={"seen": {1, 2}}), id="set-in-state"),
        pytest.param(parked("later", state=datetime(2025, 1, 1, tzinfo=UTC)), id="datetime-state"),
        pytest.param(Finished({"score": math.nan}, state=None), id="nan-in-output"),
        pytest.param(Finished(math.inf, state=None), id="infinity-output"),
        pytest.param(finished("a\x00b"), id="nul-in-output"),  # PostgreSQL cannot store it
        pytest.param(parked("later", state={"k": "\ud800"}), id="surrogate-in-state"),
        pytest.param(parked({"id": 2**64}), id="big-int-in-wait"),
        pytest.param(finished("ok", state=DEEP), id="deep-state"),
        pytest.param(finished(SELF_CONTAINED), id="cyclic-output"),
        pytest.param(parked("later", state=SELF_CONTAINED), id="cyclic-state"),
    ],
)
async def test_an_outcome_that_is_not_json_fails_the_turn_without_committing(
    outcome: object,
) -> None:
    async def handler(turn: Turn) -> object:
        return outcome if turn.number == 2 else Finished("first", state=None)

    harness = Harness(handler)
    first = await harness.start()
    failed = await harness.run(first.session_id, first.token)
    assert isinstance(failed, TurnFailed)
    assert "JSON" in failed.message
    assert harness.store.kinds(first.session_id)[-2:] == ["claimed", "released"]
    assert len(harness.store.committed(first.session_id)) == 1
    assert harness.store.sessions[first.session_id].token_digest == digest_token(first.token)


@pytest.mark.parametrize(
    "returned",
    [{"output": "looks right"}, None, "finished", Contended(current=3)],
    ids=["dict", "none", "str", "contended"],
)
async def test_a_handler_that_returns_no_outcome_fails_the_turn_without_committing(
    returned: object,
) -> None:
    async def handler(turn: Turn) -> object:
        return returned if turn.number == 2 else Finished("first", state=None)

    harness = Harness(handler)
    first = await harness.start()
    failed = await harness.run(first.session_id, first.token)
    assert isinstance(failed, TurnFailed)
    assert "must return Finished or Parked" in failed.message
    assert len(harness.store.committed(first.session_id)) == 1
    assert await harness.run(first.session_id, first.token) == failed  # still valid, fails again


# ---------------------------------------------------------------- contended turns


async def test_a_claim_taken_over_mid_turn_ends_contended_with_nothing_committed() -> None:
    harness: Harness
    taken: list[int] = []

    async def handler(turn: Turn) -> Finished:
        if turn.number == 2:
            taken.append(harness.store.takeover(turn.session_id, harness.clock()).claim.seq)
        return Finished("mine", state=None)

    harness = Harness(handler)
    first = await harness.start()
    reply = await harness.run(first.session_id, first.token)
    assert isinstance(reply, TurnReply)
    state = harness.store.sessions[first.session_id]
    assert reply.outcome == Contended(current=taken[0]) == Contended(current=state.version)
    assert (reply.token, reply.seq) == (None, None)
    assert len(harness.store.committed(first.session_id)) == 1
    assert harness.store.kinds(first.session_id)[-2:] == ["claimed", "claimed"]
    assert state.token_digest == digest_token(first.token)
    assert state.status is SessionStatus.IN_FLIGHT  # the new holder still has it


async def test_a_record_after_a_takeover_ends_the_turn_contended_at_once() -> None:
    harness: Harness
    after_record: list[str] = []

    async def handler(turn: Turn) -> Finished:
        await turn.record("before")
        harness.store.takeover(turn.session_id, harness.clock())
        await turn.record("after")
        after_record.append("the handler went on")
        return Finished("mine", state=None)

    harness = Harness(handler)
    sink = RecordingSink()
    reply = await (await harness.open_start()).run(sink)
    assert isinstance(reply, TurnReply)
    state = harness.store.sessions[reply.session_id]
    assert reply.outcome == Contended(current=state.version)
    assert reply.token is None
    assert reply.records == []  # void: the turn did not commit
    assert sink.records == [(2, "before")]
    assert after_record == []
    assert harness.store.kinds(reply.session_id) == ["started", "record", "claimed"]


async def test_a_failed_turn_whose_claim_was_taken_over_releases_nothing() -> None:
    harness: Harness

    async def handler(turn: Turn) -> Finished:
        harness.store.takeover(turn.session_id, harness.clock())
        raise RuntimeError("too late")

    harness = Harness(handler)
    failed = await (await harness.open_start()).run(RecordingSink())
    assert isinstance(failed, TurnFailed)
    assert harness.store.kinds(failed.session_id) == ["started", "claimed"]


# ---------------------------------------------------------------- cancelled turns


async def test_a_turn_whose_task_is_cancelled_is_released_as_shut_down_keeping_the_token() -> None:
    """What a replica that stops mid-turn does (the task running the turn is cancelled)."""
    entered = asyncio.Event()

    async def handler(turn: Turn) -> Finished:
        if turn.number == 2 and "retry" not in turn.input:
            entered.set()
            await asyncio.Event().wait()
        return Finished("ok", state=None)

    harness = Harness(handler)
    first = await harness.start()
    opened = await harness.open(first.session_id, first.token)
    assert isinstance(opened, OpenTurn)
    task = asyncio.create_task(opened.run(RecordingSink()))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    released = harness.store.session_events(first.session_id)[-1]
    assert isinstance(released, TurnReleased)
    assert (released.turn, released.cause) == (2, ReleaseCause.SHUT_DOWN)
    assert released.error == "the replica stopped before the turn ended"
    retry = await harness.run(first.session_id, first.token, {"retry": True})
    assert isinstance(retry, TurnReply)
    assert retry.turn == 2


async def test_a_cancelled_start_closes_the_session() -> None:
    entered = asyncio.Event()

    async def handler(turn: Turn) -> Finished:
        entered.set()
        await asyncio.Event().wait()
        return Finished("unreachable")

    harness = Harness(handler)
    opened = await harness.open_start()
    task = asyncio.create_task(opened.run(RecordingSink()))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert harness.store.kinds(opened.session_id) == ["started", "released", "closed"]


# ---------------------------------------------------------------- refusals


async def test_a_malformed_session_id_is_refused_unknown_session_and_recorded_without_one() -> None:
    harness = Harness(scripted)
    presented = "not-a-uuid/" + "x" * 300
    refusal = await harness.open(presented, "some token")
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.UNKNOWN_SESSION
    assert refusal.message == f"unknown session '{presented[:200]}'"
    assert harness.store.refusals() == [
        RequestRefused(
            session_id=None,
            turn=None,
            reason=RefusalReason.UNKNOWN_SESSION,
            presented_id=presented[:200],
            at=harness.clock.now,
        )
    ]
    assert harness.store.sessions == {}


async def test_an_unknown_well_formed_session_id_is_recorded_without_a_session_id() -> None:
    harness = Harness(scripted)
    assert await harness.refused(UNKNOWN_ID, "some token") is RefusalReason.UNKNOWN_SESSION
    [refused] = harness.store.refusals()
    assert (refused.session_id, refused.presented_id) == (None, UNKNOWN_ID)


async def test_a_refusal_of_a_session_is_recorded_against_it_without_moving_its_version() -> None:
    harness = Harness(scripted)
    first = await harness.start()
    version = harness.store.sessions[first.session_id].version
    assert await harness.refused(first.session_id, "forged") is RefusalReason.STALE_TOKEN
    assert await harness.refused(first.session_id, None) is RefusalReason.MISSING_TOKEN
    assert [(r.session_id, r.reason, r.presented_id) for r in harness.store.refusals()] == [
        (first.session_id, RefusalReason.STALE_TOKEN, None),
        (first.session_id, RefusalReason.MISSING_TOKEN, None),
    ]
    assert harness.store.sessions[first.session_id].version == version


async def test_a_start_presenting_a_token_is_refused_and_recorded_and_starts_nothing() -> None:
    ran: list[Turn] = []

    async def handler(turn: Turn) -> Finished:
        ran.append(turn)
        return Finished("ok", state=None)

    harness = Harness(handler)
    refusal = await harness.driver.open_start(StartRequest({}, token="a token"))
    assert refusal == Refusal(
        RefusalReason.UNEXPECTED_TOKEN, "present no continuationToken to start a session"
    )
    assert [(r.session_id, r.reason) for r in harness.store.refusals()] == [
        (None, RefusalReason.UNEXPECTED_TOKEN)
    ]
    assert (harness.store.sessions, ran) == ({}, [])


async def test_a_start_presenting_a_session_id_is_refused_and_records_it_cut_to_200() -> None:
    harness = Harness(scripted)
    presented = "y" * 250
    refusal = await harness.driver.open_start(StartRequest({}, session_id=presented))
    assert isinstance(refusal, Refusal)
    assert refusal.reason is RefusalReason.UNEXPECTED_TOKEN
    [refused] = harness.store.refusals()
    assert (refused.session_id, refused.presented_id) == (None, "y" * 200)
    assert harness.store.sessions == {}


async def test_sessions_started_by_the_driver_get_distinct_time_ordered_ids() -> None:
    harness = Harness(scripted)
    ids = [(await harness.start()).session_id for _ in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert all(SessionId(i.lower()) == i for i in ids)


# ---------------------------------------------------------------- a commit that fails


class FailingStore(InMemorySessionStore):
    """A store whose `failing` call raises `error` (as a dropped database connection, or an
    outage the store reports, would) until `failing` is None again."""

    failing: str | None = None
    error: Exception = ConnectionError("the database went away")

    def _fail_if(self, call: str) -> None:
        if self.failing == call:
            raise self.error

    async def commit(self, *args: Any, **kwargs: Any) -> Any:
        self._fail_if("commit")
        return await super().commit(*args, **kwargs)

    async def append_record(self, *args: Any, **kwargs: Any) -> Any:
        self._fail_if("append_record")
        return await super().append_record(*args, **kwargs)


@pytest.mark.parametrize(
    ("call", "error", "released_because"),
    [
        ("commit", ConnectionError("the database went away"), "the commit did not complete"),
        # Found by the chaos run: a record the database could not take was reported as the
        # application's failure (500 turn-failed) instead of an outage (503, retry).
        (
            "append_record",
            StoreUnavailable("InternalClientError: another operation is in progress"),
            "the database became unavailable during the turn",
        ),
    ],
)
async def test_a_store_call_failing_mid_turn_is_raised_releases_the_claim_and_keeps_the_token(
    call: str, error: Exception, released_because: str
) -> None:
    async def handler(turn: Turn) -> Finished:
        await turn.record("a step")
        return Finished("x", state=None)

    store = FailingStore()
    store.error = error
    harness = Harness(handler, store)
    started = await harness.start()
    store.failing = call
    opened = await harness.open(started.session_id, started.token)
    assert isinstance(opened, OpenTurn)
    with pytest.raises(type(error)):
        await opened.run(RecordingSink())
    released = harness.store.session_events(started.session_id)[-1]
    assert isinstance(released, TurnReleased)
    # Stored as an outage, not the application's failure: a stream resumed from the events
    # reads it as `unavailable` (retry), as the live stream ended (the chaos run found it).
    assert (released.cause, released.error) == (ReleaseCause.UNAVAILABLE, released_because)
    store.failing = None
    assert isinstance(await harness.run(started.session_id, started.token), TurnReply)


# ---------------------------------------------------------------- leases and timeouts


async def test_a_long_turn_renews_its_lease_while_it_runs() -> None:
    async def slow(turn: Turn) -> Finished:
        def renewed() -> bool:
            return harness.store.kinds(turn.session_id).count("renewed") >= 3

        await until(renewed, "the running turn renewed its lease three times")
        return Finished("done", state=None)

    harness = Harness(slow, lease_seconds=0.06)  # renewed every 20 ms
    reply = await (await harness.open_start()).run(RecordingSink())
    assert isinstance(reply, TurnReply)
    kinds = harness.store.kinds(reply.session_id)
    assert kinds[0] == "started"
    assert kinds[-1] == "committed"
    assert kinds.count("renewed") >= 3


async def test_a_turn_whose_claim_is_taken_over_is_stopped_and_contended() -> None:
    stopped = asyncio.Event()
    harness: Harness

    async def waits_forever(turn: Turn) -> Finished:
        if turn.number == 1:
            return Finished("first", state=None)
        harness.store.takeover(turn.session_id, harness.clock())
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        raise AssertionError("unreachable")

    harness = Harness(waits_forever, lease_seconds=0.03)
    first = await harness.start()
    reply = await harness.run(first.session_id, first.token)
    assert isinstance(reply, TurnReply)
    assert isinstance(reply.outcome, Contended)
    assert reply.token is None
    assert stopped.is_set()  # the heartbeat found the claim gone and stopped the handler
    assert "committed" not in harness.store.kinds(first.session_id)[2:]


async def test_a_turn_past_its_timeout_is_cancelled_and_released_keeping_the_token() -> None:
    cancelled = asyncio.Event()

    async def too_slow(turn: Turn) -> Finished:
        if turn.number == 1:
            return Finished("first", state=None)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Finished("never", state=None)

    harness = Harness(too_slow, turn_timeout=0.05)
    first = await harness.start()
    failed = await harness.run(first.session_id, first.token)
    assert failed == TurnFailed(first.session_id, 2, "the turn ran past its 0.05 s timeout")
    assert cancelled.is_set()
    released = [
        e for e in harness.store.session_events(first.session_id) if isinstance(e, TurnReleased)
    ]
    assert [(e.cause, e.error) for e in released] == [
        (ReleaseCause.TIMED_OUT, "the turn ran past its 0.05 s timeout")
    ]
    assert isinstance(await harness.open(first.session_id, first.token), OpenTurn)  # still valid


async def test_a_handlers_own_timeout_error_is_a_failure_not_the_turn_timeout() -> None:
    async def times_out_itself(turn: Turn) -> Finished:
        raise TimeoutError("the model API did not answer")

    harness = Harness(times_out_itself, turn_timeout=60)
    failed = await (await harness.open_start()).run(RecordingSink())
    assert isinstance(failed, TurnFailed)
    assert failed.message == "the model API did not answer"
