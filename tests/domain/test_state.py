"""evolve and fold: how facts change a session's state, the `sessions` projection."""

from datetime import UTC, datetime, timedelta

import pytest

from baton.domain.events import (
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    SessionClosed,
    SessionEvent,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    TurnReleased,
)
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.outcomes import KEEP, Finished, Parked, StateUpdate
from baton.domain.state import Claim, SessionStatus, evolve, fold

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SID = SessionId("0190f5a2-1b3c-7d4e-8f60-123456789abc")
LEASE = Lease("owner", T0 + timedelta(seconds=30))
FIRST = digest_token("first")
SECOND = digest_token("second")


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def started() -> SessionStarted:
    return SessionStarted(session_id=SID, seq=1, turn=1, input={"m": "hi"}, lease=LEASE, at=at(0))


def first_commit(state: StateUpdate = KEEP) -> TurnCommitted:
    return TurnCommitted(
        session_id=SID,
        seq=2,
        turn=1,
        consumed=None,
        issued=FIRST,
        outcome=Finished({"answer": 42}, state=state),
        at=at(2),
    )


def claimed_two() -> TurnClaimed:
    return TurnClaimed(session_id=SID, seq=3, turn=2, input={"m": "again"}, lease=LEASE, at=at(3))


def test_start_leaves_turn_0_in_flight_with_no_token() -> None:
    state = fold([started()])
    assert state.session_id == SID
    assert (state.version, state.turn, state.status) == (1, 0, SessionStatus.IN_FLIGHT)
    assert state.token_digest is None
    assert state.claim == Claim(turn=1, seq=1)
    assert (state.state, state.last_outcome) == (None, None)
    assert state.created_at == state.updated_at == at(0)


def test_commit_makes_the_session_idle_with_the_issued_token_and_the_turn_advanced() -> None:
    state = fold([started(), first_commit()])
    assert (state.version, state.turn, state.status) == (2, 1, SessionStatus.IDLE)
    assert state.token_digest == FIRST
    assert state.claim is None
    assert state.last_outcome == {"status": "finished", "output": {"answer": 42}, "turn": 1}
    assert (state.created_at, state.updated_at) == (at(0), at(2))


def test_a_parked_commit_keeps_the_wait_as_last_outcome() -> None:
    parked = TurnCommitted(
        session_id=SID,
        seq=2,
        turn=1,
        consumed=None,
        issued=FIRST,
        outcome=Parked({"approval": "manager"}),
        at=at(2),
    )
    state = fold([started(), parked])
    assert state.last_outcome == {"status": "parked", "wait": {"approval": "manager"}, "turn": 1}


def test_an_explicit_state_replaces_the_handler_state() -> None:
    state = fold([started(), first_commit(state={"count": 1})])
    assert state.state == {"count": 1}


@pytest.mark.parametrize("replacement", [None, 0, "", [], {}])
def test_an_explicit_falsy_state_still_replaces_the_handler_state(
    replacement: StateUpdate,
) -> None:
    state = fold([started(), first_commit(state={"count": 1})])
    second = TurnCommitted(
        session_id=SID,
        seq=4,
        turn=2,
        consumed=FIRST,
        issued=SECOND,
        outcome=Finished("ok", state=replacement),
        at=at(4),
    )
    assert fold([claimed_two(), second], state).state == replacement


def test_keep_leaves_the_handler_state_unchanged() -> None:
    state = fold([started(), first_commit(state={"count": 1})])
    second = TurnCommitted(
        session_id=SID,
        seq=4,
        turn=2,
        consumed=FIRST,
        issued=SECOND,
        outcome=Parked("later", state=KEEP),
        at=at(4),
    )
    after = fold([claimed_two(), second], state)
    assert after.state == {"count": 1}
    assert (after.turn, after.token_digest) == (2, SECOND)


def test_claim_makes_the_session_in_flight_holding_the_new_claim() -> None:
    state = fold([started(), first_commit(), claimed_two()])
    assert (state.status, state.claim, state.version) == (
        SessionStatus.IN_FLIGHT,
        Claim(turn=2, seq=3),
        3,
    )
    assert (state.turn, state.token_digest) == (1, FIRST)


def test_a_record_moves_only_the_version() -> None:
    before = fold([started(), first_commit(), claimed_two()])
    record = RecordAppended(session_id=SID, seq=4, turn=2, record={"r": 1}, at=at(4))
    after = evolve(before, record)
    assert (after.version, after.updated_at) == (4, at(4))
    assert after.claim == before.claim
    assert (after.status, after.turn, after.token_digest, after.state) == (
        before.status,
        before.turn,
        before.token_digest,
        before.state,
    )


def test_release_makes_the_session_idle_clears_the_claim_and_keeps_the_token() -> None:
    released = TurnReleased(
        session_id=SID, seq=4, turn=2, cause=ReleaseCause.FAILED, error="boom", at=at(4)
    )
    state = fold([started(), first_commit(state={"count": 1}), claimed_two(), released])
    assert (state.status, state.claim, state.version) == (SessionStatus.IDLE, None, 4)
    assert (state.token_digest, state.turn, state.state) == (FIRST, 1, {"count": 1})


def test_close_makes_the_session_closed_without_a_claim() -> None:
    released = TurnReleased(
        session_id=SID, seq=2, turn=1, cause=ReleaseCause.FAILED, error="boom", at=at(2)
    )
    closed = SessionClosed(session_id=SID, seq=3, turn=0, cause=CloseCause.START_FAILED, at=at(3))
    state = fold([started(), released, closed])
    assert (state.status, state.claim, state.version) == (SessionStatus.CLOSED, None, 3)
    assert state.token_digest is None


def test_fold_is_evolve_applied_in_order() -> None:
    events: list[SessionEvent] = [started(), first_commit(), claimed_two()]
    state = None
    for event in events:
        state = evolve(state, event)
    assert fold(events) == state
    assert fold(events[1:], fold(events[:1])) == state


def test_fold_of_no_events_raises() -> None:
    with pytest.raises(ValueError, match="no events"):
        fold([])


@pytest.mark.parametrize(
    "event",
    [
        first_commit(),
        claimed_two(),
        RecordAppended(session_id=SID, seq=2, turn=1, record=1, at=at(1)),
        TurnReleased(session_id=SID, seq=2, turn=1, cause=ReleaseCause.FAILED, error=None, at=T0),
        SessionClosed(session_id=SID, seq=2, turn=0, cause=CloseCause.START_FAILED, at=T0),
    ],
    ids=lambda event: type(event).__name__,
)
def test_any_event_before_the_start_raises(event: SessionEvent) -> None:
    with pytest.raises(ValueError, match="before the session started"):
        evolve(None, event)
