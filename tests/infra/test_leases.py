"""Claim leases in the store, on both backends: a lapsed claim is taken over by the current
token, its turn can no longer commit, and no token is ever consumed twice."""

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.events import ClaimRenewed, Lease, TurnCommitted
from domain.identifiers import digest_token
from domain.outcomes import Contended, Finished
from domain.ports import ClaimGranted, SessionStore
from domain.refusals import RefusalReason
from infra.tables import events
from tests.infra.test_store import committed_session, kinds, lease, new_token, now


async def test_a_lapsed_claim_is_expired_and_claimed_again_with_the_same_token(
    store: SessionStore, engine: AsyncEngine
) -> None:
    session_id, token = await committed_session(store)
    dead = await store.claim(session_id, digest_token(token), {}, now(), lease(seconds=5))
    assert isinstance(dead, ClaimGranted)

    still_held = await store.claim(session_id, digest_token(token), {}, now(), lease())
    assert getattr(still_held, "reason", None) is RefusalReason.IN_FLIGHT

    later = now() + timedelta(seconds=6)
    taken = await store.claim(session_id, digest_token(token), {}, later, lease(seconds=60))
    assert isinstance(taken, ClaimGranted)
    assert taken.event.turn == dead.event.turn  # the same turn, run again
    assert taken.event.seq == dead.event.seq + 2  # expired, claimed (the refusal took none)
    assert (await kinds(engine, session_id))[-4:] == ["claimed", "refused", "expired", "claimed"]

    late = await store.commit(
        session_id,
        dead.claim,
        Finished("late"),
        digest_token(new_token()),
        now(),
        consumed=digest_token(token),
    )
    assert isinstance(late, Contended)
    done = await store.commit(
        session_id,
        taken.claim,
        Finished("ok"),
        digest_token(new_token()),
        now(),
        consumed=digest_token(token),
    )
    assert isinstance(done, TurnCommitted)
    assert done.consumed == digest_token(token)
    consumed = select(func.count()).where(events.c.consumed == digest_token(token))
    async with engine.connect() as conn:
        assert (await conn.execute(consumed)).scalar_one() == 1


async def test_a_renewed_lease_keeps_the_claim(store: SessionStore, engine: AsyncEngine) -> None:
    session_id, token = await committed_session(store)
    granted = await store.claim(session_id, digest_token(token), {}, now(), lease(seconds=5))
    assert isinstance(granted, ClaimGranted)
    longer = Lease("test", now() + timedelta(seconds=60))
    renewed = await store.renew(session_id, granted.claim, longer, now())
    assert isinstance(renewed, ClaimRenewed)
    loaded = await store.load(session_id)
    assert loaded is not None
    assert (loaded.lease, loaded.claim) == (longer, granted.claim)

    after_the_first_lease = now() + timedelta(seconds=10)
    refused = await store.claim(session_id, digest_token(token), {}, after_the_first_lease, lease())
    assert getattr(refused, "reason", None) is RefusalReason.IN_FLIGHT
    assert (await kinds(engine, session_id))[-3:] == ["claimed", "renewed", "refused"]


async def test_a_claim_taken_over_can_no_longer_renew(store: SessionStore) -> None:
    session_id, token = await committed_session(store)
    dead = await store.claim(session_id, digest_token(token), {}, now(), lease(seconds=1))
    assert isinstance(dead, ClaimGranted)
    later = now() + timedelta(seconds=2)
    taken = await store.claim(session_id, digest_token(token), {}, later, lease())
    assert isinstance(taken, ClaimGranted)
    renewed = await store.renew(session_id, dead.claim, lease(), now())
    assert renewed == Contended(current=taken.state.version)
