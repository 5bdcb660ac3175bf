"""Baton's own store appending events in-process (no HTTP), timed like peer-eventsourcing.

Claim + commit cycles through the public SessionStore API (infra.stores.open_store): two
events per cycle, one transaction per event, the same number of events as the peer appends,
after the same unmeasured warm-up. With `writers` > 1, that many sessions cycle
concurrently, as the peer's writers do.
"""

import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from baton.domain.commands import ClaimTurn, CommitTurn, StartSession
from baton.domain.decisions import ClaimGranted
from baton.domain.events import Lease, TurnCommitted
from baton.domain.identifiers import TokenDigest, digest_token, mint_token, new_session_id
from baton.domain.outcomes import Finished
from baton.domain.ports import SessionStore
from baton.infra.settings import Settings
from baton.infra.stores import open_store

EVENTS_PER_CYCLE = 2  # a claimed event, then a committed one


def _now() -> datetime:
    return datetime.now(UTC)


def _lease(at: datetime) -> Lease:
    return Lease("bench", at + timedelta(seconds=30))


def _new_digest() -> TokenDigest:
    return digest_token(mint_token(secrets.token_bytes))


class _Session:
    """One session, turned over and over: claim with the current digest, commit a new one."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._session_id = new_session_id(int(time.time() * 1000), secrets.token_bytes)
        self._digest = _new_digest()
        self._turn = 1

    @property
    def session_id(self) -> str:
        return self._session_id

    async def start(self) -> None:
        at = _now()
        granted = await self._store.start(
            StartSession(
                session_id=self._session_id, at=at, input={"message": "x"}, lease=_lease(at)
            )
        )
        await self._commit(granted)

    async def cycle(self) -> None:
        at = _now()
        granted = await self._store.claim(
            ClaimTurn(
                session_id=self._session_id,
                at=at,
                presented=self._digest,
                input={"message": "x"},
                lease=_lease(at),
            )
        )
        if not isinstance(granted, ClaimGranted):
            raise RuntimeError(f"the store refused a valid claim: {granted}")
        await self._commit(granted)

    async def _commit(self, granted: ClaimGranted) -> None:
        issued = _new_digest()
        first = granted.event.turn == 1
        committed = await self._store.commit(
            CommitTurn(
                session_id=self._session_id,
                at=_now(),
                claim=granted.claim,
                consumed=None if first else self._digest,
                issued=issued,
                outcome=Finished({"turn": granted.event.turn}),
            )
        )
        if not isinstance(committed, TurnCommitted):
            raise RuntimeError(f"the store did not commit: {committed}")
        self._digest = issued


async def _cycles(session: _Session, cycles: int) -> None:
    for _ in range(cycles):
        await session.cycle()


async def _appends(settings: Settings, cycles: int, warmup_cycles: int, writers: int) -> float:
    async with open_store(settings) as store:
        sessions = [_Session(store) for _ in range(writers)]
        await asyncio.gather(*(session.start() for session in sessions))
        await asyncio.gather(*(_cycles(session, warmup_cycles) for session in sessions))
        began = time.perf_counter()
        await asyncio.gather(*(_cycles(session, cycles) for session in sessions))
        return time.perf_counter() - began


async def _seed(settings: Settings, count: int) -> list[str]:
    async with open_store(settings) as store:
        sessions = [_Session(store) for _ in range(count)]
        await asyncio.gather(*(session.start() for session in sessions))
        return [session.session_id for session in sessions]


def seed_sessions(database_url: str, count: int) -> list[str]:
    """`count` sessions written by Baton's own store, each started and its first turn
    committed: idle, with a current token and a chain head, as the SQL floors need them.
    `database_url` must already be migrated to head."""
    return asyncio.run(_seed(Settings.from_env(database_url=database_url), count))


def run_appends(
    database_url: str, events: int, warmup_events: int, writers: int = 1
) -> dict[str, Any]:
    """`database_url` must already be migrated to head."""
    settings = Settings.from_env(database_url=database_url)  # as baton serve reads them
    cycles = events // (EVENTS_PER_CYCLE * writers)
    warmup_cycles = warmup_events // (EVENTS_PER_CYCLE * writers)
    appended = cycles * EVENTS_PER_CYCLE * writers
    elapsed = asyncio.run(_appends(settings, cycles, warmup_cycles, writers))
    return {
        "rate": appended / elapsed,
        "unit": "events/s",
        "count": appended,
        "p50_ms": None,
        "p99_ms": None,
        "refusals": {},
        "errors": {},
        "loadgen_cpu": None,
        "extra": {"events": appended, "seconds": elapsed},
    }
