"""Principals (domain/principals.py): a session exists only for the principal that started it,
every fact names who caused it, and Idempotency-Keys are scoped to their principal."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from baton.domain.commands import (
    AppendRecord,
    ClaimTurn,
    CloseSession,
    CommitTurn,
    ReadSession,
    ReleaseTurn,
    RenewClaim,
    RequestCancel,
    StartSession,
)
from baton.domain.decisions import ClaimGranted
from baton.domain.events import Lease, ReleaseCause, RequestRefused
from baton.domain.identifiers import SessionId, digest_token
from baton.domain.outcomes import Finished
from baton.domain.principals import visible_to
from baton.domain.recovery import Idempotency, key_digest
from baton.domain.refusals import Refusal, RefusalReason
from baton.domain.state import SessionState, fold

AT = datetime(2026, 1, 1, tzinfo=UTC)
SID = SessionId("0190f5a2-1b3c-7d4e-8f60-123456789abc")
LEASE = Lease("here", AT + timedelta(seconds=30))
TOKEN = digest_token("the current token")
ALICE, BOB = "key:alice", "key:bob"


def started_by(principal: str | None) -> SessionState:
    """A session `principal` started, idle after turn 1 with TOKEN current."""
    start = StartSession(session_id=SID, at=AT, input={}, lease=LEASE, principal=principal)
    granted = start.decide(None).answer
    assert isinstance(granted, ClaimGranted)
    commit = CommitTurn(
        session_id=SID,
        at=AT,
        claim=granted.claim,
        consumed=None,
        issued=TOKEN,
        outcome=Finished(output=None),
        principal=principal,
    )
    after = commit.decide(granted.state).after
    assert after is not None
    return after


def test_a_session_belongs_to_whoever_started_it() -> None:
    assert started_by(ALICE).owner == ALICE
    assert started_by(None).owner is None


@pytest.mark.parametrize(
    ("owner", "principal", "visible"),
    [
        (ALICE, ALICE, True),
        (ALICE, BOB, False),
        (ALICE, None, True),  # authentication off: every session is there
        (None, BOB, True),  # started while no one was asked: open to all
        (None, None, True),
    ],
)
def test_who_sees_a_session(owner: str | None, principal: str | None, visible: bool) -> None:
    state = replace(started_by(None), owner=owner)
    assert (visible_to(state, principal) is state) is visible
    assert visible_to(None, principal) is None


def claim(principal: str, token: object = TOKEN) -> ClaimTurn:
    return ClaimTurn(
        session_id=SID, at=AT, presented=token, input={}, lease=LEASE, principal=principal
    )  # type: ignore[arg-type]


COMMANDS = {
    "continue": lambda principal: claim(principal),
    "read": lambda principal: ReadSession(
        session_id=SID, at=AT, presented=TOKEN, principal=principal
    ),
    "cancel": lambda principal: RequestCancel(
        session_id=SID, at=AT, presented=TOKEN, principal=principal
    ),
    "close": lambda principal: CloseSession(
        session_id=SID, at=AT, presented=TOKEN, principal=principal
    ),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_another_principal_is_answered_as_for_an_unknown_session(name: str) -> None:
    """Even with the right token: B learns nothing, not even that the session exists, and
    the refusal it leaves names B and stands apart from A's session."""
    state = started_by(ALICE)
    theirs = COMMANDS[name](BOB).decide(state)
    unknown = COMMANDS[name](BOB).decide(None)
    assert theirs.answer == unknown.answer
    assert isinstance(theirs.answer, Refusal)
    assert theirs.answer.reason is RefusalReason.UNKNOWN_SESSION
    assert theirs.events == ()
    assert theirs.after is None
    refused = theirs.side_event
    assert isinstance(refused, RequestRefused)
    assert (refused.session_id, refused.principal) == (None, BOB)
    assert refused.presented_id == SID


@pytest.mark.parametrize("name", COMMANDS)
def test_the_owner_is_served_and_named_in_what_it_causes(name: str) -> None:
    decision = COMMANDS[name](ALICE).decide(started_by(ALICE))
    assert not isinstance(decision.answer, Refusal)
    assert all(event.principal == ALICE for event in decision.events)


def test_a_takeover_names_the_principal_whose_claim_caused_the_expiry() -> None:
    state = started_by(ALICE)
    held = claim(ALICE).decide(state).after
    assert held is not None
    later = replace(claim(ALICE), at=AT + timedelta(minutes=5))
    expired, claimed = later.decide(held).events
    assert (expired.KIND.value, expired.principal) == ("expired", ALICE)
    assert claimed.principal == ALICE


def test_every_event_of_a_turn_names_the_principal_that_claimed_it() -> None:
    state = started_by(ALICE)
    granted = claim(ALICE).decide(state).answer
    assert isinstance(granted, ClaimGranted)
    held, turn = granted.state, granted.claim
    common = {"session_id": SID, "at": AT, "claim": turn, "principal": ALICE}
    decided = [
        RenewClaim(lease=LEASE, **common).decide(held),
        AppendRecord(record={"r": 1}, **common).decide(held),
        CommitTurn(
            consumed=TOKEN, issued=digest_token("next"), outcome=Finished(None), **common
        ).decide(held),
        ReleaseTurn(cause=ReleaseCause.FAILED, error="x", **common).decide(held),
    ]
    for decision in decided:
        assert [event.principal for event in decision.events] == [ALICE] * len(decision.events)


def test_the_owner_survives_a_replay_of_the_events() -> None:
    start = StartSession(session_id=SID, at=AT, input={}, lease=LEASE, principal=ALICE)
    assert fold(start.decide(None).events).owner == ALICE


def test_idempotency_keys_are_scoped_to_their_principal() -> None:
    assert key_digest("same-key", ALICE) != key_digest("same-key", BOB)
    assert key_digest("same-key", ALICE) != key_digest("same-key")
    assert key_digest("same-key") == key_digest("same-key", None)


def test_a_keyed_start_seals_under_its_principals_key() -> None:
    key = Idempotency(key_digest("a-key-of-twenty-two-chars", ALICE), "fingerprint")
    start = StartSession(
        session_id=SID,
        at=AT,
        input={},
        lease=LEASE,
        idempotency=key,
        seal_until=AT + timedelta(days=1),
        principal=ALICE,
    )
    seal = start.decide(None).seal
    assert seal is not None
    assert seal.lookup == key_digest("a-key-of-twenty-two-chars", ALICE)
