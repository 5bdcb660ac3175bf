"""Claim leases in the store, on every store: a lapsed claim is taken over by the current
token, its turn can no longer commit, and no token is ever consumed twice."""

from datetime import timedelta

import pytest

from baton.domain.decisions import ClaimGranted
from baton.domain.events import ClaimRenewed, Lease, TurnCommitted
from baton.domain.identifiers import digest_token
from baton.domain.outcomes import Contended, Finished
from baton.domain.ports import SessionStore
from baton.domain.refusals import RefusalReason
from tests import store_calls as calls
from tests.databases import EVERY_STORE
from tests.infra.test_store import (
    StoredEvents,
    committed_session,
    kinds,
    lease,
    new_token,
    now,
)

pytestmark = pytest.mark.pgbouncer  # the store contract, through PgBouncer too


@EVERY_STORE
async def test_a_lapsed_claim_is_expired_and_claimed_again_with_the_same_token(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    session_id, token = await committed_session(store)
    dead = await calls.claim(store, session_id, digest_token(token), {}, now(), lease(seconds=5))
    assert isinstance(dead, ClaimGranted)

    still_held = await calls.claim(store, session_id, digest_token(token), {}, now(), lease())
    assert getattr(still_held, "reason", None) is RefusalReason.IN_FLIGHT

    later = now() + timedelta(seconds=6)
    taken = await calls.claim(store, session_id, digest_token(token), {}, later, lease(seconds=60))
    assert isinstance(taken, ClaimGranted)
    assert taken.event.turn == dead.event.turn  # the same turn, run again
    assert taken.event.seq == dead.event.seq + 2  # expired, claimed (the refusal took none)
    assert (await kinds(stored_events, session_id))[-4:] == [
        "claimed",
        "refused",
        "expired",
        "claimed",
    ]

    late = await calls.commit(
        store,
        session_id,
        dead.claim,
        Finished("late"),
        digest_token(new_token()),
        now(),
        consumed=digest_token(token),
    )
    assert isinstance(late, Contended)
    done = await calls.commit(
        store,
        session_id,
        taken.claim,
        Finished("ok"),
        digest_token(new_token()),
        now(),
        consumed=digest_token(token),
    )
    assert isinstance(done, TurnCommitted)
    assert done.consumed == digest_token(token)
    spent = [e for e in await stored_events(session_id) if e.consumed == digest_token(token)]
    assert len(spent) == 1


@EVERY_STORE
async def test_a_renewed_lease_keeps_the_claim(
    store: SessionStore, stored_events: StoredEvents
) -> None:
    session_id, token = await committed_session(store)
    granted = await calls.claim(store, session_id, digest_token(token), {}, now(), lease(seconds=5))
    assert isinstance(granted, ClaimGranted)
    longer = Lease("test", now() + timedelta(seconds=60))
    renewed = await calls.renew(store, session_id, granted.claim, longer, now())
    assert isinstance(renewed, ClaimRenewed)
    loaded = await store.load(session_id)
    assert loaded is not None
    assert (loaded.lease, loaded.claim) == (longer, granted.claim)

    after_the_first_lease = now() + timedelta(seconds=10)
    refused = await calls.claim(
        store, session_id, digest_token(token), {}, after_the_first_lease, lease()
    )
    assert getattr(refused, "reason", None) is RefusalReason.IN_FLIGHT
    assert (await kinds(stored_events, session_id))[-3:] == ["claimed", "renewed", "refused"]


@EVERY_STORE
async def test_a_claim_taken_over_can_no_longer_renew(store: SessionStore) -> None:
    session_id, token = await committed_session(store)
    dead = await calls.claim(store, session_id, digest_token(token), {}, now(), lease(seconds=1))
    assert isinstance(dead, ClaimGranted)
    later = now() + timedelta(seconds=2)
    taken = await calls.claim(store, session_id, digest_token(token), {}, later, lease())
    assert isinstance(taken, ClaimGranted)
    renewed = await calls.renew(store, session_id, dead.claim, lease(), now())
    assert renewed == Contended(current=taken.state.version)
