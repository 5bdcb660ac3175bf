"""The decisions of PROTOCOL sections 1-3 and 7: which fact a request makes, or which refusal."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from baton.domain import decisions, holding
from baton.domain.commands import (
    AppendRecord,
    ClaimTurn,
    CloseSession,
    CommitTurn,
    ReleaseTurn,
    RenewClaim,
    StartSession,
)
from baton.domain.decisions import ClaimGranted, Decision
from baton.domain.events import (
    ClaimExpired,
    ClaimRenewed,
    CloseCause,
    Lease,
    RecordAppended,
    ReleaseCause,
    RequestRefused,
    SessionClosed,
    SessionStarted,
    TurnClaimed,
    TurnCommitted,
    TurnReleased,
)
from baton.domain.identifiers import SessionId, TokenDigest, digest_token
from baton.domain.json import JsonObject
from baton.domain.outcomes import Contended, Finished, HandlerOutcome, Parked
from baton.domain.refusals import PRESENTED_ID_LIMIT, Refusal, RefusalReason
from baton.domain.state import Claim, SessionState, SessionStatus, evolve, fold

AT = datetime(2025, 1, 1, tzinfo=UTC)
SID = SessionId("0190f5a2-1b3c-7d4e-8f60-123456789abc")
FIRST = digest_token("first token")
SECOND = digest_token("second token")
OTHER = digest_token("someone else's token")
LEASE = Lease("this-process", AT + timedelta(seconds=30))

# ---------------------------------------------------------------- the commands, decided


def claim_turn(
    state: SessionState | None,
    presented: TokenDigest | None,
    *,
    at: datetime = AT,
    session_id: SessionId = SID,
    input: JsonObject | None = None,
) -> Decision[ClaimGranted | Refusal]:
    command = ClaimTurn(
        session_id=session_id, at=at, presented=presented, input=input or {}, lease=LEASE
    )
    return command.decide(state)


def commit_turn(
    state: SessionState | None,
    claim: Claim,
    outcome: HandlerOutcome,
    issued: TokenDigest,
) -> TurnCommitted | Contended:
    """A commit's answer, consuming the token that is current (as the claim saw it)."""
    return consume(state, claim, outcome, issued, state.token_digest if state else None)


def consume(
    state: SessionState | None,
    claim: Claim,
    outcome: HandlerOutcome,
    issued: TokenDigest,
    consumed: TokenDigest | None,
) -> TurnCommitted | Contended:
    command = CommitTurn(
        session_id=SID, at=AT, claim=claim, consumed=consumed, issued=issued, outcome=outcome
    )
    return command.decide(state).answer


def append_record(state: SessionState | None, claim: Claim) -> RecordAppended | Contended:
    return AppendRecord(session_id=SID, at=AT, claim=claim, record={"step": 1}).decide(state).answer


def release_turn(
    state: SessionState | None, claim: Claim, cause: ReleaseCause, error: str | None
) -> Decision[TurnReleased | None]:
    command = ReleaseTurn(session_id=SID, at=AT, claim=claim, cause=cause, error=error)
    return command.decide(state)


def renew_claim(state: SessionState | None, claim: Claim, lease: Lease) -> object:
    return RenewClaim(session_id=SID, at=AT, claim=claim, lease=lease).decide(state).answer


def close(
    state: SessionState | None, presented: TokenDigest | None, at: datetime = AT
) -> Decision[SessionState | Refusal]:
    return CloseSession(session_id=SID, at=at, presented=presented).decide(state)


# ---------------------------------------------------------------- sessions to decide on


def starting() -> SessionState:
    """Turn 1 is running: no token exists yet."""
    command = StartSession(session_id=SID, at=AT, input={"message": "hi"}, lease=LEASE)
    return command.decide(None).answer.state


def committed(state: SessionState, issued: TokenDigest) -> SessionState:
    assert state.claim is not None
    event = commit_turn(state, state.claim, Finished("ok"), issued)
    assert isinstance(event, TurnCommitted)
    return evolve(state, event)


def idle() -> SessionState:
    """Turn 1 committed; FIRST is the current token."""
    return committed(starting(), FIRST)


def claimed(state: SessionState, presented: TokenDigest | None = FIRST) -> SessionState:
    decision = claim_turn(state, presented)
    assert isinstance(decision.answer, ClaimGranted)
    assert decision.after == fold(decision.events, state)
    return decision.answer.state


def in_flight() -> SessionState:
    """Turn 2 holds the claim; FIRST is still the current token."""
    return claimed(idle())


def closed() -> SessionState:
    """Closed while FIRST was the current token."""
    closing = close(idle(), FIRST).answer
    assert isinstance(closing, SessionState)
    return closing


def claim(
    state: SessionState | None, presented: TokenDigest | None, at: datetime = AT
) -> TurnClaimed | Refusal:
    """The claim decided, as its TurnClaimed event (what most tests look at) or a refusal."""
    answer = claim_turn(state, presented, at=at).answer
    if isinstance(answer, Refusal):
        return answer
    assert isinstance(answer.event, TurnClaimed)
    return answer.event


def reason(decision: TurnClaimed | Refusal) -> RefusalReason | None:
    return decision.reason if isinstance(decision, Refusal) else None


# ---------------------------------------------------------------- claim_turn: each refusal


def test_no_session_is_refused_unknown_session_naming_the_id() -> None:
    assert claim(None, FIRST) == Refusal(RefusalReason.UNKNOWN_SESSION, f"unknown session '{SID}'")


def test_no_token_is_refused_missing_token() -> None:
    assert claim(idle(), None) == Refusal(RefusalReason.MISSING_TOKEN, "missing continuationToken")


def test_a_token_that_is_not_the_current_one_is_refused_stale_token() -> None:
    assert claim(idle(), OTHER) == Refusal(
        RefusalReason.STALE_TOKEN, "stale or invalid continuationToken"
    )


def test_the_current_token_while_a_turn_holds_the_claim_is_refused_in_flight() -> None:
    assert claim(in_flight(), FIRST) == Refusal(
        RefusalReason.IN_FLIGHT, "a turn is already in flight for this session"
    )


def test_the_current_token_of_a_closed_session_is_refused_closed_naming_the_id() -> None:
    assert claim(closed(), FIRST) == Refusal(RefusalReason.CLOSED, f"session '{SID}' is closed")


def test_a_consumed_token_is_refused_stale_token() -> None:
    after_two_turns = committed(in_flight(), SECOND)
    assert reason(claim(after_two_turns, FIRST)) is RefusalReason.STALE_TOKEN
    assert isinstance(claim(after_two_turns, SECOND), TurnClaimed)


def test_any_token_during_the_first_turn_is_stale_because_none_exists_yet() -> None:
    assert reason(claim(starting(), OTHER)) is RefusalReason.STALE_TOKEN


# ---------------------------------------------------------------- claim_turn: the order


Builder = Callable[[], SessionState | None]


@pytest.mark.parametrize(
    ("build", "presented", "expected"),
    [
        (lambda: None, None, RefusalReason.UNKNOWN_SESSION),
        (lambda: None, OTHER, RefusalReason.UNKNOWN_SESSION),
        (idle, None, RefusalReason.MISSING_TOKEN),
        (idle, OTHER, RefusalReason.STALE_TOKEN),
        (idle, FIRST, None),
        (in_flight, None, RefusalReason.MISSING_TOKEN),
        (in_flight, OTHER, RefusalReason.STALE_TOKEN),
        (in_flight, FIRST, RefusalReason.IN_FLIGHT),
        (closed, None, RefusalReason.MISSING_TOKEN),
        (closed, OTHER, RefusalReason.STALE_TOKEN),
        (closed, FIRST, RefusalReason.CLOSED),
        (starting, None, RefusalReason.MISSING_TOKEN),
        (starting, OTHER, RefusalReason.STALE_TOKEN),
    ],
    ids=[
        "unknown-beats-missing",
        "unknown-beats-stale",
        "idle-missing",
        "idle-stale",
        "idle-current-claims",
        "in-flight-missing-beats-in-flight",
        "in-flight-stale-beats-in-flight",
        "in-flight-current",
        "closed-missing-beats-closed",
        "closed-stale-beats-closed",
        "closed-current",
        "starting-missing",
        "starting-stale",
    ],
)
def test_claim_answers_the_first_refusal_in_protocol_order(
    build: Builder, presented: TokenDigest | None, expected: RefusalReason | None
) -> None:
    assert reason(claim(build(), presented)) == expected


# ---------------------------------------------------------------- claim_turn: the claim


def test_a_valid_claim_takes_the_next_seq_and_the_next_turn() -> None:
    state = idle()
    decision = claim_turn(state, FIRST, input={"message": "next"})
    assert decision.events == (
        TurnClaimed(
            session_id=SID,
            seq=state.version + 1,
            turn=2,
            input={"message": "next"},
            lease=LEASE,
            at=AT,
        ),
    )
    assert decision.side_event is None


def test_a_retry_after_a_released_turn_claims_the_same_turn_number_at_a_new_seq() -> None:
    state = in_flight()
    assert state.claim is not None
    released = release_turn(state, state.claim, ReleaseCause.FAILED, "boom").answer
    assert released is not None
    after = evolve(state, released)
    retry = claim(after, FIRST)
    assert isinstance(retry, TurnClaimed)
    assert (retry.turn, retry.seq) == (state.claim.turn, released.seq + 1)


def test_the_unknown_session_message_cuts_a_long_id_to_200_characters() -> None:
    long_id = SessionId("x" * 500)
    decision = claim_turn(None, None, session_id=long_id)
    assert PRESENTED_ID_LIMIT == 200
    assert decision.answer == Refusal(
        RefusalReason.UNKNOWN_SESSION, f"unknown session '{'x' * 200}'"
    )
    assert decision.side_event is not None
    assert (decision.side_event.session_id, decision.side_event.presented_id) == (None, long_id)


# ---------------------------------------------------------------- start


def test_a_start_is_seq_1_and_claims_turn_1() -> None:
    decision = StartSession(session_id=SID, at=AT, input={"a": 1}, lease=LEASE).decide(None)
    started = SessionStarted(session_id=SID, seq=1, turn=1, input={"a": 1}, lease=LEASE, at=AT)
    assert decision.events == (started,)
    assert decision.answer == ClaimGranted(started, evolve(None, started))


def test_a_session_cannot_start_twice() -> None:
    with pytest.raises(ValueError, match="already exists"):
        StartSession(session_id=SID, at=AT, input={}, lease=LEASE).decide(idle())


def test_a_start_presenting_a_token_is_refused_unexpected_token() -> None:
    refusal = decisions.refuse_start(token_presented=True, session_id_presented=False)
    assert refusal == Refusal(
        RefusalReason.UNEXPECTED_TOKEN, "present no continuationToken to start a session"
    )


def test_a_start_presenting_a_session_id_is_refused_unexpected_token() -> None:
    refusal = decisions.refuse_start(token_presented=False, session_id_presented=True)
    assert refusal is not None
    assert refusal.reason is RefusalReason.UNEXPECTED_TOKEN


def test_a_start_presenting_both_is_refused_for_the_token() -> None:
    refusal = decisions.refuse_start(token_presented=True, session_id_presented=True)
    assert refusal is not None
    assert refusal.message == "present no continuationToken to start a session"


def test_a_start_presenting_neither_is_not_refused() -> None:
    assert decisions.refuse_start(token_presented=False, session_id_presented=False) is None


# ---------------------------------------------------------------- record_refusal


def test_a_refusal_of_an_existing_session_names_it_and_takes_no_seq() -> None:
    refusal = claim(idle(), OTHER)
    assert isinstance(refusal, Refusal)
    event = decisions.record_refusal(refusal, state=idle(), presented_id=SID, at=AT)
    assert event == RequestRefused(
        session_id=SID, turn=None, reason=RefusalReason.STALE_TOKEN, presented_id=None, at=AT
    )
    assert not hasattr(event, "seq")


def test_a_refusal_naming_no_session_stores_no_session_id_but_the_presented_id() -> None:
    refusal = claim(None, FIRST)
    assert isinstance(refusal, Refusal)
    event = decisions.record_refusal(refusal, state=None, presented_id="what-was-sent", at=AT)
    assert (event.session_id, event.presented_id, event.reason) == (
        None,
        "what-was-sent",
        RefusalReason.UNKNOWN_SESSION,
    )


# ---------------------------------------------------------------- the claim holder's acts


def _stale_claims() -> list[tuple[str, SessionState | None, Claim]]:
    taken_over = in_flight()
    assert taken_over.claim is not None
    old = taken_over.claim
    again = evolve(
        taken_over,
        TurnClaimed(
            session_id=SID,
            seq=taken_over.version + 1,
            turn=old.turn,
            input={},
            lease=LEASE,
            at=AT,
        ),
    )
    return [
        ("no-session", None, Claim(turn=2, seq=3)),
        ("idle-session", idle(), Claim(turn=2, seq=3)),
        ("taken-over", again, old),
        ("closed-session", closed(), Claim(turn=2, seq=3)),
    ]


STALE_CLAIMS = _stale_claims()
STALE_IDS = [name for name, _, _ in STALE_CLAIMS]


@pytest.mark.parametrize(("name", "state", "stale"), STALE_CLAIMS, ids=STALE_IDS)
def test_commit_without_the_claim_is_contended_at_the_current_version(
    name: str, state: SessionState | None, stale: Claim
) -> None:
    decision = commit_turn(state, stale, Finished("ok"), SECOND)
    assert decision == Contended(current=state.version if state else 0)


@pytest.mark.parametrize(("name", "state", "stale"), STALE_CLAIMS, ids=STALE_IDS)
def test_append_without_the_claim_is_contended_at_the_current_version(
    name: str, state: SessionState | None, stale: Claim
) -> None:
    decision = append_record(state, stale)
    assert decision == Contended(current=state.version if state else 0)


@pytest.mark.parametrize(("name", "state", "stale"), STALE_CLAIMS, ids=STALE_IDS)
def test_release_without_the_claim_does_nothing(
    name: str, state: SessionState | None, stale: Claim
) -> None:
    decision = release_turn(state, stale, ReleaseCause.FAILED, "boom")
    assert (decision.answer, decision.events, decision.after) == (None, (), None)


def test_holds_claim_only_for_the_exact_claim() -> None:
    state = in_flight()
    assert state.claim is not None
    assert holding.holds_claim(state, state.claim)
    assert not holding.holds_claim(state, Claim(turn=state.claim.turn, seq=state.claim.seq + 1))
    assert not holding.holds_claim(state, Claim(turn=state.claim.turn + 1, seq=state.claim.seq))
    assert not holding.holds_claim(None, state.claim)


def test_the_first_commit_consumes_no_token_and_issues_the_first() -> None:
    state = starting()
    assert state.claim is not None
    decision = commit_turn(state, state.claim, Parked("approval"), FIRST)
    assert decision == TurnCommitted(
        session_id=SID,
        seq=2,
        turn=1,
        consumed=None,
        issued=FIRST,
        outcome=Parked("approval"),
        at=AT,
    )


def test_a_commit_consumes_the_current_token_and_issues_the_new_one() -> None:
    state = in_flight()
    assert state.claim is not None
    decision = commit_turn(state, state.claim, Finished("ok"), SECOND)
    assert isinstance(decision, TurnCommitted)
    assert (decision.consumed, decision.issued) == (FIRST, SECOND)
    assert (decision.seq, decision.turn) == (state.version + 1, state.claim.turn)


@pytest.mark.parametrize("consumed", [OTHER, None], ids=["another-token", "no-token"])
def test_a_commit_that_would_consume_another_token_than_the_current_is_contended(
    consumed: TokenDigest | None,
) -> None:
    """The token the commit spends is the one the claim was made with: if that is not the
    current token, the session moved on, and nothing is consumed."""
    state = in_flight()
    assert state.claim is not None
    decision = consume(state, state.claim, Finished("ok"), SECOND, consumed)
    assert decision == Contended(current=state.version)


def test_a_record_takes_the_next_seq_within_the_claimed_turn() -> None:
    state = in_flight()
    assert state.claim is not None
    decision = append_record(state, state.claim)
    assert decision == RecordAppended(
        session_id=SID, seq=state.version + 1, turn=state.claim.turn, record={"step": 1}, at=AT
    )


def test_a_release_takes_the_next_seq_and_keeps_cause_and_error() -> None:
    state = in_flight()
    assert state.claim is not None
    decision = release_turn(state, state.claim, ReleaseCause.CANCELLED, "gone")
    released = TurnReleased(
        session_id=SID,
        seq=state.version + 1,
        turn=state.claim.turn,
        cause=ReleaseCause.CANCELLED,
        error="gone",
        at=AT,
    )
    assert (decision.answer, decision.events) == (released, (released,))


def test_a_release_that_closes_takes_the_next_seq_after_it() -> None:
    state = starting()
    assert state.claim is not None
    command = ReleaseTurn(
        session_id=SID,
        at=AT,
        claim=state.claim,
        cause=ReleaseCause.FAILED,
        error="boom",
        close=CloseCause.START_FAILED,
    )
    decision = command.decide(state)
    assert decision.events[1] == SessionClosed(
        session_id=SID, seq=state.version + 2, turn=1, cause=CloseCause.START_FAILED, at=AT
    )
    assert decision.after is not None
    assert (decision.after.status, decision.after.token_digest) == (SessionStatus.CLOSED, None)


# ---------------------------------------------------------------- leases


def test_a_claim_of_an_idle_session_takes_nothing_over() -> None:
    decision = claim_turn(idle(), FIRST)
    assert isinstance(decision.answer, ClaimGranted)
    assert not decision.answer.took_over


def test_an_in_flight_claim_whose_lease_holds_is_refused_in_flight() -> None:
    still_held = AT + timedelta(seconds=29)
    assert reason(claim(in_flight(), FIRST, at=still_held)) is RefusalReason.IN_FLIGHT


def test_a_lapsed_claim_expires_and_the_current_token_claims_the_same_turn() -> None:
    state = in_flight()
    assert state.claim is not None
    lapsed = AT + timedelta(seconds=30)
    decision = claim_turn(state, FIRST, at=lapsed)
    assert isinstance(decision.answer, ClaimGranted)
    assert decision.events[0] == ClaimExpired(
        session_id=SID, seq=state.version + 1, turn=2, owner="this-process", at=lapsed
    )
    assert (decision.answer.event.seq, decision.answer.event.turn) == (state.version + 2, 2)
    assert decision.answer.took_over  # counted as a lease takeover (api/metrics.py)
    after = fold(decision.events, state)
    assert after == decision.after == decision.answer.state
    assert after.claim == Claim(turn=2, seq=state.version + 2)
    assert after.status is SessionStatus.IN_FLIGHT


@pytest.mark.parametrize(
    ("presented", "refused"),
    [(None, RefusalReason.MISSING_TOKEN), (SECOND, RefusalReason.STALE_TOKEN)],
)
def test_a_lapsed_claim_is_not_taken_over_without_the_current_token(
    presented: TokenDigest | None, refused: RefusalReason
) -> None:
    lapsed = AT + timedelta(seconds=31)
    assert reason(claim(in_flight(), presented, at=lapsed)) is refused


def test_a_renewal_extends_the_lease_of_the_claim_that_holds() -> None:
    state = in_flight()
    assert state.claim is not None
    longer = Lease("this-process", AT + timedelta(seconds=90))
    renewed = renew_claim(state, state.claim, longer)
    assert isinstance(renewed, ClaimRenewed)
    after = evolve(state, renewed)
    assert (after.lease, after.claim, after.version) == (longer, state.claim, state.version + 1)
    # Renewed, the old deadline no longer lets anyone take the session over.
    assert reason(claim(after, FIRST, at=AT + timedelta(seconds=60))) is RefusalReason.IN_FLIGHT


def test_a_renewal_by_a_claim_that_was_taken_over_is_contended() -> None:
    state = in_flight()
    assert state.claim is not None
    old = state.claim
    released = release_turn(state, old, ReleaseCause.FAILED, None)
    assert released.after is not None
    taken = claimed(released.after)
    assert renew_claim(taken, old, LEASE) == Contended(current=taken.version)


# ---------------------------------------------------------------- closing


def test_the_current_token_closes_an_idle_session() -> None:
    state = idle()
    decision = close(state, FIRST)
    assert decision.events == (
        SessionClosed(
            session_id=SID, seq=state.version + 1, turn=1, cause=CloseCause.CLIENT, at=AT
        ),
    )
    after = fold(decision.events, state)
    assert after == decision.answer == decision.after
    assert (after.status, after.token_digest) == (SessionStatus.CLOSED, FIRST)
    assert reason(claim(after, FIRST)) is RefusalReason.CLOSED


@pytest.mark.parametrize(
    ("state", "presented", "expected"),
    [
        (None, FIRST, RefusalReason.UNKNOWN_SESSION),
        (idle(), None, RefusalReason.MISSING_TOKEN),
        (idle(), SECOND, RefusalReason.STALE_TOKEN),
        (in_flight(), FIRST, RefusalReason.IN_FLIGHT),
        (closed(), FIRST, RefusalReason.CLOSED),
    ],
)
def test_closing_is_refused_in_the_order_of_section_3(
    state: SessionState | None, presented: TokenDigest | None, expected: RefusalReason
) -> None:
    decision = close(state, presented)
    assert isinstance(decision.answer, Refusal)
    assert decision.answer.reason is expected
    assert decision.side_event is not None
    assert (decision.events, decision.after) == ((), None)


def test_closing_a_session_held_by_a_lapsed_claim_expires_the_claim_first() -> None:
    state = in_flight()
    events = close(state, FIRST, at=AT + timedelta(seconds=31)).events
    assert [type(event).__name__ for event in events] == ["ClaimExpired", "SessionClosed"]
    assert [event.seq for event in events] == [state.version + 1, state.version + 2]
