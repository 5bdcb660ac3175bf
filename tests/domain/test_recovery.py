"""The rules of recovery (PROTOCOL section 6), decided without a database: who may read a
session and recover its last token, when a retry is answered from a seal, which seals a
decision keeps or forgets, and what a cancel request does. Every clock here is fixed."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from baton.domain.commands import (
    ClaimTurn,
    CommitTurn,
    ReadSession,
    ReleaseTurn,
    RequestCancel,
    StartSession,
)
from baton.domain.decisions import CancelAnswer, ClaimGranted, Decision
from baton.domain.events import (
    CancelRequested,
    ClaimExpired,
    CloseCause,
    Lease,
    Recovered,
    RecoveredVia,
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
from baton.domain.outcomes import Contended, Finished
from baton.domain.recovery import (
    Forget,
    Idempotency,
    ReadAccess,
    Replay,
    Seal,
    authorise_read,
    fingerprint,
    key_digest,
    replay_or_refuse,
    replay_start,
)
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.state import SessionState, SessionStatus, evolve

AT = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = timedelta(hours=1)
UNTIL = AT + WINDOW  # when the seals made at AT stop recovering anything
SID = SessionId("0190f5a2-1b3c-7d4e-8f60-123456789abc")
NEW_SID = SessionId("0190f5a2-1b3c-7d4e-8f60-cba987654321")
FIRST = digest_token("first token")
SECOND = digest_token("second token")
THIRD = digest_token("third token")
FORGED = digest_token("a forged token")
LEASE = Lease("this-process", AT + timedelta(seconds=30))

INPUT: JsonObject = {"message": "hello"}
KEY = key_digest("a-start-key-of-22-chars")
SAME = Idempotency(KEY, fingerprint(INPUT))
OTHER_INPUT = Idempotency(KEY, fingerprint({"message": "something else"}))
OTHER_KEY = Idempotency(key_digest("another-key-of-22-chars"), fingerprint(INPUT))

UNKNOWN = Refusal(RefusalReason.UNKNOWN_SESSION, f"unknown session '{SID}'")
MISSING = Refusal(RefusalReason.MISSING_TOKEN, "missing continuationToken")
STALE = Refusal(RefusalReason.STALE_TOKEN, "stale or invalid continuationToken")
IN_FLIGHT = Refusal(RefusalReason.IN_FLIGHT, "a turn is already in flight for this session")
CLOSED = Refusal(RefusalReason.CLOSED, f"session '{SID}' is closed")
MISMATCH = Refusal(
    RefusalReason.IDEMPOTENCY_MISMATCH,
    "this Idempotency-Key was used with another input; use a new key for a new turn",
)
KEY_SPENT = Refusal(
    RefusalReason.STALE_TOKEN, "the session this Idempotency-Key started has moved on"
)


# ---------------------------------------------------------------- sessions to decide on


def start(
    idempotency: Idempotency | None = None, *, at: datetime = AT, session_id: SessionId = SID
) -> StartSession:
    return StartSession(
        session_id=session_id,
        at=at,
        input=INPUT,
        lease=LEASE,
        idempotency=idempotency,
        seal_until=at + WINDOW if idempotency else None,
    )


def starting() -> SessionState:
    """Turn 1 runs; no token exists yet."""
    granted = start().decide(None).answer
    assert isinstance(granted, ClaimGranted)
    return granted.state


def commit(state: SessionState, issued: TokenDigest, seal: Seal | None = None) -> SessionState:
    assert state.claim is not None
    command = CommitTurn(
        session_id=SID,
        at=AT,
        claim=state.claim,
        consumed=state.token_digest,
        issued=issued,
        outcome=Finished({"turn": state.claim.turn}),
        seal=seal,
    )
    event = command.decide(state).answer
    assert isinstance(event, TurnCommitted)
    return evolve(state, event)


def claim_command(
    presented: TokenDigest | None,
    idempotency: Idempotency | None = None,
    *,
    at: datetime = AT,
    input: JsonObject = INPUT,
) -> ClaimTurn:
    return ClaimTurn(
        session_id=SID,
        at=at,
        presented=presented,
        input=input,
        lease=LEASE,
        idempotency=idempotency,
    )


def claimed(state: SessionState, presented: TokenDigest) -> SessionState:
    granted = claim_command(presented).decide(state).answer
    assert isinstance(granted, ClaimGranted)
    return granted.state


def turn_one() -> SessionState:
    """Turn 1 committed: FIRST is current."""
    return commit(starting(), FIRST)


def turn_two_running() -> SessionState:
    """Turn 2 holds the claim; FIRST is still current."""
    return claimed(turn_one(), FIRST)


def turn_two() -> SessionState:
    """Turn 2 committed, consuming FIRST: SECOND is current."""
    return commit(turn_two_running(), SECOND)


def turn_three_running() -> SessionState:
    return claimed(turn_two(), SECOND)


def closed_after_turn_two() -> SessionState:
    state = turn_two()
    closing = SessionClosed(
        session_id=SID, seq=state.version + 1, turn=state.turn, cause=CloseCause.CLIENT, at=AT
    )
    return evolve(state, closing)


def seal_of_turn_two(
    idempotency: Idempotency | None = SAME,
    *,
    expires_at: datetime = UNTIL,
    session_id: SessionId = SID,
) -> Seal:
    """What the commit of turn 2 kept: SECOND's token, sealed under FIRST."""
    return Seal(
        lookup=FIRST,
        session_id=session_id,
        turn=2,
        sealed="SECOND, sealed under FIRST",
        idempotency=idempotency,
        expires_at=expires_at,
    )


def seal_of_start(sealed: str | None = "FIRST, sealed under the key") -> Seal:
    """What a keyed start keeps: None until its first turn commits."""
    return Seal(
        lookup=KEY, session_id=SID, turn=1, sealed=sealed, idempotency=SAME, expires_at=UNTIL
    )


def refusal_fact(refusal: Refusal, *, at: datetime = AT) -> RequestRefused:
    return RequestRefused(
        session_id=SID, turn=None, reason=refusal.reason, presented_id=None, at=at
    )


def recovered_fact(turn: int, via: RecoveredVia, *, at: datetime = AT) -> Recovered:
    return Recovered(session_id=SID, turn=turn, via=via, at=at)


def refused(refusal: Refusal, *, at: datetime = AT) -> Decision[Refusal]:
    """A refusal of the known session SID, as a decision: recorded, nothing else."""
    return Decision(refusal, side_event=refusal_fact(refusal, at=at))


# ---------------------------------------------------------------- authorise_read


def test_a_read_of_no_session_is_refused_unknown_session() -> None:
    assert authorise_read(None, SID, FIRST, None, AT) == UNKNOWN


def test_a_read_without_a_token_is_refused_missing_token() -> None:
    assert authorise_read(turn_two(), SID, None, seal_of_turn_two(), AT) == MISSING


def test_the_current_token_reads_the_session_and_recovers_nothing() -> None:
    state = turn_two()
    assert authorise_read(state, SID, SECOND, None, AT) == ReadAccess(state)


def test_the_token_the_last_turn_consumed_reads_it_with_its_seal() -> None:
    state, seal = turn_two(), seal_of_turn_two()
    assert authorise_read(state, SID, FIRST, seal, AT) == ReadAccess(state, seal)


def test_a_read_never_answers_in_flight() -> None:
    state = turn_three_running()
    assert authorise_read(state, SID, SECOND, None, AT) == ReadAccess(state)


def test_the_consumed_token_is_stale_once_the_next_turn_is_claimed() -> None:
    # The claim erases the seal; a seal that outlived it still recovers nothing.
    assert authorise_read(turn_three_running(), SID, FIRST, seal_of_turn_two(), AT) == STALE


def test_the_consumed_token_is_stale_once_the_window_passes() -> None:
    state, seal = turn_two(), seal_of_turn_two()
    just_before = UNTIL - timedelta(microseconds=1)
    assert authorise_read(state, SID, FIRST, seal, just_before) == ReadAccess(state, seal)
    assert authorise_read(state, SID, FIRST, seal, UNTIL) == STALE
    assert authorise_read(state, SID, FIRST, seal, UNTIL + timedelta(days=1)) == STALE


def test_a_seal_of_an_earlier_turn_or_another_session_recovers_nothing() -> None:
    earlier = Seal(
        lookup=FIRST, session_id=SID, turn=1, sealed="x", idempotency=None, expires_at=UNTIL
    )
    assert authorise_read(turn_two(), SID, FIRST, earlier, AT) == STALE
    theirs = seal_of_turn_two(session_id=NEW_SID)
    assert authorise_read(turn_two(), SID, FIRST, theirs, AT) == STALE


def test_a_seal_still_waiting_for_its_token_recovers_nothing() -> None:
    waiting = seal_of_start(sealed=None)
    assert authorise_read(turn_one(), SID, TokenDigest(KEY), waiting, AT) == STALE


def test_a_forged_token_is_stale() -> None:
    assert authorise_read(turn_two(), SID, FORGED, None, AT) == STALE


def test_a_closed_session_answers_closed_to_its_tokens_and_stale_to_others() -> None:
    state = closed_after_turn_two()
    assert authorise_read(state, SID, SECOND, None, AT) == CLOSED
    assert authorise_read(state, SID, FIRST, seal_of_turn_two(), AT) == CLOSED
    assert authorise_read(state, SID, FORGED, None, AT) == STALE


# ---------------------------------------------------------------- replay_or_refuse


def test_a_retry_with_the_same_key_and_input_replays_the_committed_turn() -> None:
    seal = seal_of_turn_two()
    assert replay_or_refuse(SAME, seal, turn_two(), AT) == Replay(SID, 2, seal)


def test_a_retry_with_the_same_key_and_another_input_is_a_mismatch() -> None:
    assert replay_or_refuse(OTHER_INPUT, seal_of_turn_two(), turn_two(), AT) == MISMATCH


def test_a_retry_with_another_key_is_stale() -> None:
    assert replay_or_refuse(OTHER_KEY, seal_of_turn_two(), turn_two(), AT) == STALE


def test_a_key_on_a_retry_of_a_turn_committed_without_one_is_stale() -> None:
    unkeyed = seal_of_turn_two(idempotency=None)
    assert replay_or_refuse(SAME, unkeyed, turn_two(), AT) == STALE


def test_a_retry_without_a_seal_is_stale() -> None:
    assert replay_or_refuse(SAME, None, turn_two(), AT) == STALE


def test_a_retry_after_the_window_or_the_next_claim_is_stale() -> None:
    assert replay_or_refuse(SAME, seal_of_turn_two(), turn_two(), UNTIL) == STALE
    assert replay_or_refuse(SAME, seal_of_turn_two(), turn_three_running(), AT) == STALE
    # Even with another input: past the window the key says nothing at all.
    assert replay_or_refuse(OTHER_INPUT, seal_of_turn_two(), turn_two(), UNTIL) == STALE


# ---------------------------------------------------------------- replay_start


def test_a_keyed_start_retried_after_its_turn_committed_replays_it() -> None:
    seal = seal_of_start()
    assert replay_start(SAME, seal, turn_one(), AT) == Replay(SID, 1, seal)


def test_a_keyed_start_retried_while_its_turn_runs_is_in_flight() -> None:
    assert replay_start(SAME, seal_of_start(sealed=None), starting(), AT) == IN_FLIGHT


def test_a_keyed_start_retried_with_another_input_is_a_mismatch_even_while_it_runs() -> None:
    assert replay_start(OTHER_INPUT, seal_of_start(), turn_one(), AT) == MISMATCH
    assert replay_start(OTHER_INPUT, seal_of_start(sealed=None), starting(), AT) == MISMATCH


def test_a_keyed_start_retried_after_turn_two_was_claimed_is_spent() -> None:
    assert replay_start(SAME, seal_of_start(), turn_two_running(), AT) == KEY_SPENT
    assert replay_start(SAME, seal_of_start(), turn_two(), AT) == KEY_SPENT


def test_a_keyed_start_retried_after_the_window_is_spent() -> None:
    assert replay_start(SAME, seal_of_start(), turn_one(), UNTIL) == KEY_SPENT


# ---------------------------------------------------------------- StartSession, with a key


def test_a_keyed_start_looks_its_key_up_and_decides_on_the_session_it_started() -> None:
    command = start(SAME)
    assert command.seal_lookup == KEY
    assert command.subject(None) == SID
    assert command.subject(seal_of_start()) == SID  # the seal's session
    other = Seal(
        lookup=KEY, session_id=NEW_SID, turn=1, sealed="x", idempotency=SAME, expires_at=UNTIL
    )
    assert command.subject(other) == NEW_SID
    assert start().seal_lookup is None


def test_a_new_keyed_start_keeps_a_seal_of_its_key_with_no_token_yet() -> None:
    decision = start(SAME).decide(None, None)
    assert isinstance(decision.answer, ClaimGranted)
    assert decision.events == (
        SessionStarted(session_id=SID, seq=1, turn=1, input=INPUT, lease=LEASE, at=AT),
    )
    assert decision.seal == Seal(
        lookup=KEY, session_id=SID, turn=1, sealed=None, idempotency=SAME, expires_at=UNTIL
    )
    assert (decision.side_event, decision.forget) == (None, None)


def test_a_start_without_a_key_keeps_no_seal() -> None:
    decision = start().decide(None, None)
    assert isinstance(decision.answer, ClaimGranted)
    assert decision.seal is None


def test_a_keyed_start_retried_after_its_commit_replays_and_records_the_recovery() -> None:
    seal = seal_of_start()
    at = AT + timedelta(minutes=5)
    decision = start(SAME, at=at, session_id=NEW_SID).decide(turn_one(), seal)
    assert decision == Decision(
        Replay(SID, 1, seal), side_event=recovered_fact(1, RecoveredVia.REPLAY, at=at)
    )


def test_a_keyed_start_retried_while_its_turn_runs_is_refused_in_flight() -> None:
    decision = start(SAME, session_id=NEW_SID).decide(starting(), seal_of_start(sealed=None))
    assert decision == refused(IN_FLIGHT)


def test_a_keyed_start_retried_with_another_input_is_refused_mismatch() -> None:
    decision = start(OTHER_INPUT, session_id=NEW_SID).decide(turn_one(), seal_of_start())
    assert decision == refused(MISMATCH)


def test_a_keyed_start_retried_after_turn_two_is_refused_stale_never_a_second_session() -> None:
    for state in (turn_two_running(), turn_two()):
        decision = start(SAME, session_id=NEW_SID).decide(state, seal_of_start())
        assert decision == refused(KEY_SPENT)
        assert decision.events == ()


def test_a_key_whose_seal_expired_starts_a_session_afresh() -> None:
    """The store loads the session the seal names (command.subject): past the window, the
    key no longer names it, and the start makes a new session with a new seal."""
    expired = seal_of_start()
    later = UNTIL + timedelta(seconds=1)
    command = start(SAME, at=later, session_id=NEW_SID)
    loaded = {SID: turn_one()}.get(command.subject(expired))
    decision = command.decide(loaded, expired)
    assert isinstance(decision.answer, ClaimGranted)
    assert decision.answer.state.session_id == NEW_SID
    assert decision.seal == Seal(
        lookup=KEY,
        session_id=NEW_SID,
        turn=1,
        sealed=None,
        idempotency=SAME,
        expires_at=later + WINDOW,
    )


# ---------------------------------------------------------------- ClaimTurn, with a key


def test_a_claim_looks_a_seal_up_only_when_it_brings_a_key() -> None:
    assert claim_command(FIRST, SAME).seal_lookup == FIRST
    assert claim_command(FIRST).seal_lookup is None


def test_a_keyed_retry_with_the_consumed_token_replays_and_records_the_recovery() -> None:
    seal = seal_of_turn_two()
    decision = claim_command(FIRST, SAME).decide(turn_two(), seal)
    assert decision == Decision(
        Replay(SID, 2, seal), side_event=recovered_fact(2, RecoveredVia.REPLAY)
    )


def test_a_keyed_retry_with_another_input_is_refused_mismatch() -> None:
    decision = claim_command(FIRST, OTHER_INPUT).decide(turn_two(), seal_of_turn_two())
    assert decision == refused(MISMATCH)


def test_a_keyed_retry_with_another_key_is_refused_stale() -> None:
    decision = claim_command(FIRST, OTHER_KEY).decide(turn_two(), seal_of_turn_two())
    assert decision == refused(STALE)


def test_a_retry_without_a_key_is_refused_stale_whatever_was_kept() -> None:
    decision = claim_command(FIRST).decide(turn_two(), seal_of_turn_two())
    assert decision == refused(STALE)


def test_a_key_with_a_forged_token_is_what_the_token_is_without_it() -> None:
    # A forged token finds no seal: the store has none under its digest.
    assert claim_command(FORGED, SAME).decide(turn_two(), None) == refused(STALE)


def test_a_keyed_retry_while_the_turn_still_runs_is_refused_in_flight() -> None:
    # The token it presented is still current: the turn has not committed yet.
    decision = claim_command(FIRST, SAME).decide(turn_two_running(), None)
    assert decision == refused(IN_FLIGHT)


def test_a_keyed_claim_with_the_current_token_claims_and_forgets_the_last_seal() -> None:
    state = turn_two()
    decision = claim_command(SECOND, SAME).decide(state, None)
    assert isinstance(decision.answer, ClaimGranted)
    assert decision.events == (
        TurnClaimed(session_id=SID, seq=state.version + 1, turn=3, input=INPUT, lease=LEASE, at=AT),
    )
    assert (decision.forget, decision.seal, decision.side_event) == (Forget.NEXT_TOKENS, None, None)


def test_every_claim_forgets_the_seals_of_the_token_it_spends() -> None:
    decision = claim_command(SECOND).decide(turn_two())
    assert isinstance(decision.answer, ClaimGranted)
    assert decision.forget is Forget.NEXT_TOKENS


def test_a_takeover_of_a_lapsed_claim_forgets_them_too() -> None:
    running = turn_three_running()
    later = AT + timedelta(minutes=1)  # past LEASE
    decision = claim_command(SECOND, at=later).decide(running)
    assert isinstance(decision.answer, ClaimGranted)
    assert isinstance(decision.events[0], ClaimExpired)
    assert decision.forget is Forget.NEXT_TOKENS


def test_a_refused_claim_forgets_nothing() -> None:
    decision = claim_command(FIRST).decide(turn_two_running())
    assert decision == refused(IN_FLIGHT)
    assert decision.forget is None


# ---------------------------------------------------------------- CommitTurn, ReleaseTurn


def test_a_commit_keeps_exactly_the_seal_it_is_given() -> None:
    state, seal = turn_two_running(), seal_of_turn_two()
    assert state.claim is not None
    command = CommitTurn(
        session_id=SID,
        at=AT,
        claim=state.claim,
        consumed=FIRST,
        issued=SECOND,
        outcome=Finished("ok"),
        seal=seal,
    )
    decision = command.decide(state)
    assert isinstance(decision.answer, TurnCommitted)
    assert decision.seal is seal
    assert decision.forget is None


def test_a_commit_without_a_seal_keeps_none() -> None:
    state = turn_two_running()
    assert state.claim is not None
    command = CommitTurn(
        session_id=SID,
        at=AT,
        claim=state.claim,
        consumed=FIRST,
        issued=SECOND,
        outcome=Finished("ok"),
    )
    assert command.decide(state).seal is None


def test_a_contended_commit_keeps_no_seal() -> None:
    state = turn_two_running()
    assert state.claim is not None
    command = CommitTurn(
        session_id=SID,
        at=AT,
        claim=state.claim,
        consumed=FORGED,  # not the current token: the session moved on
        issued=SECOND,
        outcome=Finished("ok"),
        seal=seal_of_turn_two(),
    )
    decision = command.decide(state)
    assert decision == Decision(Contended(current=state.version))


def release(state: SessionState, close: CloseCause | None) -> Decision[TurnReleased | None]:
    assert state.claim is not None
    command = ReleaseTurn(
        session_id=SID,
        at=AT,
        claim=state.claim,
        cause=ReleaseCause.FAILED,
        error="boom",
        close=close,
    )
    return command.decide(state)


def test_a_release_that_closes_a_failed_start_forgets_every_seal() -> None:
    decision = release(starting(), CloseCause.START_FAILED)
    assert isinstance(decision.answer, TurnReleased)
    assert decision.forget is Forget.ALL
    assert decision.after is not None
    assert decision.after.status is SessionStatus.CLOSED


def test_a_release_of_a_later_turn_forgets_nothing() -> None:
    decision = release(turn_two_running(), None)
    assert isinstance(decision.answer, TurnReleased)
    assert (decision.forget, decision.seal) == (None, None)


# ---------------------------------------------------------------- RequestCancel


def cancel(
    state: SessionState | None, presented: TokenDigest | None, *, at: datetime = AT
) -> Decision[CancelAnswer | Refusal]:
    return RequestCancel(session_id=SID, at=at, presented=presented).decide(state)


def test_cancelling_an_idle_session_changes_nothing() -> None:
    state = turn_two()
    assert cancel(state, SECOND) == Decision(CancelAnswer(state, pending=False))


def test_cancelling_a_running_turn_appends_cancel_requested_at_the_next_seq() -> None:
    state = turn_three_running()
    assert state.claim is not None
    decision = cancel(state, SECOND)
    asked = CancelRequested(session_id=SID, seq=state.version + 1, turn=3, at=AT)
    assert decision.events == (asked,)
    assert decision.after == evolve(state, asked)
    assert decision.after.cancel_requested
    assert decision.after.claim == state.claim  # the turn still holds the session
    assert decision.answer == CancelAnswer(decision.after, pending=True)
    assert decision.side_event is None


def test_cancelling_twice_appends_cancel_requested_once() -> None:
    first = cancel(turn_three_running(), SECOND)
    assert first.after is not None
    second = cancel(first.after, SECOND)
    assert second == Decision(CancelAnswer(first.after, pending=True))


def test_the_end_of_the_turn_clears_the_cancel_request() -> None:
    asked = cancel(turn_three_running(), SECOND).after
    assert asked is not None
    assert asked.claim is not None
    released = TurnReleased(
        session_id=SID,
        seq=asked.version + 1,
        turn=3,
        cause=ReleaseCause.CANCELLED,
        error="cancelled",
        at=AT,
    )
    after = evolve(asked, released)
    assert (after.cancel_requested, after.status, after.token_digest) == (
        False,
        SessionStatus.IDLE,
        SECOND,  # the token stays valid
    )


def test_a_cancel_is_refused_in_protocol_order_and_never_in_flight() -> None:
    running = turn_three_running()
    assert cancel(None, SECOND) == Decision(
        UNKNOWN,
        side_event=RequestRefused(
            session_id=None,
            turn=None,
            reason=RefusalReason.UNKNOWN_SESSION,
            presented_id=SID,
            at=AT,
        ),
    )
    assert cancel(running, None) == refused(MISSING)
    assert cancel(running, FIRST) == refused(STALE)  # consumed
    assert cancel(running, FORGED) == refused(STALE)
    closed = closed_after_turn_two()
    assert cancel(closed, FORGED) == refused(STALE)  # stale beats closed
    assert cancel(closed, SECOND) == refused(CLOSED)
    answer = cancel(running, SECOND).answer
    assert isinstance(answer, CancelAnswer)  # in flight is what a cancel is for


def test_a_cancel_while_the_first_turn_runs_has_no_token_to_bring() -> None:
    assert cancel(starting(), FORGED) == refused(STALE)


def test_a_cancel_of_a_claim_whose_lease_lapsed_still_asks_it_to_stop() -> None:
    later = AT + timedelta(minutes=1)
    decision = cancel(turn_three_running(), SECOND, at=later)
    assert [type(event) for event in decision.events] == [CancelRequested]


# ---------------------------------------------------------------- ReadSession


def read(
    state: SessionState | None,
    presented: TokenDigest | None,
    seal: Seal | None,
    *,
    at: datetime = AT,
    via: RecoveredVia = RecoveredVia.READ,
) -> Decision[ReadAccess | Refusal]:
    command = ReadSession(session_id=SID, at=at, presented=presented, via=via)
    assert command.seal_lookup == presented
    return command.decide(state, seal)


def test_a_read_with_the_current_token_records_nothing() -> None:
    state = turn_two()
    assert read(state, SECOND, None) == Decision(ReadAccess(state))


def test_a_read_with_the_consumed_token_recovers_and_records_how() -> None:
    state, seal = turn_two(), seal_of_turn_two()
    assert read(state, FIRST, seal) == Decision(
        ReadAccess(state, seal), side_event=recovered_fact(2, RecoveredVia.READ)
    )
    via_events = read(state, FIRST, seal, via=RecoveredVia.EVENTS)
    assert via_events.side_event == recovered_fact(2, RecoveredVia.EVENTS)
    assert (via_events.events, via_events.after) == ((), None)  # no seq, no state change


@pytest.mark.parametrize(
    ("state_of", "at"),
    [(turn_two, UNTIL), (turn_three_running, AT)],
    ids=["after-the-window", "after-the-next-claim"],
)
def test_a_read_with_the_consumed_token_is_stale_once_it_recovers_nothing(
    state_of: Callable[[], SessionState], at: datetime
) -> None:
    state = state_of()
    assert read(state, FIRST, seal_of_turn_two(), at=at) == refused(STALE, at=at)


def test_a_read_of_a_closed_session_is_refused_closed() -> None:
    assert read(closed_after_turn_two(), SECOND, None) == refused(CLOSED)


def test_a_read_of_a_running_turn_is_no_in_flight_refusal() -> None:
    state = turn_three_running()
    assert read(state, SECOND, None) == Decision(ReadAccess(state))


def test_a_fingerprint_is_the_same_digest_in_every_release() -> None:
    """Seals keep fingerprints: a retry after an upgrade is compared with one taken before
    it, so the canonical text (sorted keys, no spaces, text as it is) must never change."""
    assert fingerprint({"message": "x"}) == (
        "2f24b288affe729f4d212b5740dd71f4e229957a0e1a37cd4b33c74be50448ea"
    )
    odd = {"message": "x", "b": [1, 2.5, None, True, "é\u2028"], "a": {"z": 1, "y": "\ud800"}}
    assert fingerprint(odd) == "e5c27f3c6dec9af92b1a986fcc032632869f22b375bf700e7290fd51b49cb60f"
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
