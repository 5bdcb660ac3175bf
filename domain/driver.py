"""The turn driver: every transport opens turns and closes sessions through it.

A turn is opened in one step (validate and claim, or a refusal) and run in another
(domain/turn.py), so that every refusal is known before a transport commits to a status
line or opens a stream (PROTOCOL section 3).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain import decisions, refusals
from domain.commands import ClaimTurn, CloseSession, StartSession
from domain.events import Lease
from domain.handler import TurnHandler
from domain.identifiers import (
    RandomBytes,
    SessionId,
    digest_token,
    new_session_id,
    parse_session_id,
)
from domain.ports import SessionStore
from domain.refusals import PRESENTED_ID_LIMIT, Refusal
from domain.requests import CloseRequest, ContinueRequest, StartRequest
from domain.state import SessionState
from domain.turn import OpenTurn

Clock = Callable[[], datetime]
"""Injected time: an aware UTC datetime."""


@dataclass(frozen=True, slots=True)
class TurnServices:
    """What running turns needs from outside the domain, injected at start-up."""

    store: SessionStore
    handler: TurnHandler
    clock: Clock
    random_bytes: RandomBytes
    owner: str = "baton"  # this process, as claims name it
    lease_seconds: float = 30.0  # a claim lapses this long after its last renewal
    turn_timeout: float = 300.0  # a turn running longer is cancelled and released
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def lease(self, at: datetime) -> Lease:
        return Lease(self.owner, at + timedelta(seconds=self.lease_seconds))


class TurnDriver:
    def __init__(self, services: TurnServices) -> None:
        self._services = services
        self._store = services.store
        self._clock = services.clock

    async def open_start(self, request: StartRequest) -> OpenTurn | Refusal:
        at = self._clock()
        refusal = decisions.refuse_start(
            token_presented=request.token is not None,
            session_id_presented=request.session_id is not None,
        )
        if refusal is not None:
            shown = request.session_id[:PRESENTED_ID_LIMIT] if request.session_id else None
            await self._store.refuse(
                decisions.record_refusal(refusal, state=None, presented_id=shown, at=at)
            )
            return refusal
        session_id = new_session_id(int(at.timestamp() * 1000), self._services.random_bytes)
        lease = self._services.lease(at)
        command = StartSession(session_id=session_id, at=at, input=request.input, lease=lease)
        granted = await self._store.start(command)
        return OpenTurn(self._services, granted, request.input, presented=None)

    async def open_continue(self, request: ContinueRequest) -> OpenTurn | Refusal:
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        command = ClaimTurn(
            session_id=session_id,
            at=at,
            presented=digest_token(request.token) if request.token else None,
            input=request.input,
            lease=self._services.lease(at),
        )
        granted = await self._store.claim(command)
        if isinstance(granted, Refusal):
            return granted
        return OpenTurn(self._services, granted, request.input, presented=request.token)

    async def close(self, request: CloseRequest) -> SessionState | Refusal:
        """Close a session with its current token (PROTOCOL section 3's `closed`)."""
        at = self._clock()
        session_id = parse_session_id(request.session_id)
        if session_id is None:
            return await self._refuse_unknown(request.session_id, at)
        presented = digest_token(request.token) if request.token else None
        return await self._store.close(
            CloseSession(session_id=session_id, at=at, presented=presented)
        )

    async def refuse_in_flight(self, session_id: SessionId) -> Refusal:
        """Refuse a turn for a session whose claim the caller knows is held (a WebSocket
        connection whose own turn is still running), recording it like any refusal."""
        at = self._clock()
        await self._store.refuse(decisions.refusal_for(session_id, refusals.IN_FLIGHT, at))
        return refusals.IN_FLIGHT

    async def _refuse_unknown(self, text: str, at: datetime) -> Refusal:
        refusal = refusals.unknown_session(text)
        presented = text[:PRESENTED_ID_LIMIT]
        await self._store.refuse(
            decisions.record_refusal(refusal, state=None, presented_id=presented, at=at)
        )
        return refusal
