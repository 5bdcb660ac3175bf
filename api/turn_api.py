"""The one object every transport turns to: open a turn, close a session, refuse a turn.

A transport reads a request off the wire, calls one method here and frames the answer
(api/wire.py): a refusal, known before anything is sent, or a live turn that already runs
in a task of its own. It never reaches the driver, the runner or the shutdown gate itself.
"""

from dataclasses import dataclass

from api.live import LiveTurn, TurnRunner
from api.shutdown import ShutdownGate
from domain.driver import TurnDriver
from domain.identifiers import SessionId
from domain.refusals import Refusal
from domain.requests import CloseRequest, ContinueRequest, StartRequest
from domain.state import SessionState
from domain.turn import OpenTurn


@dataclass(frozen=True, slots=True)
class TurnApi:
    """One dependency for every transport: Litestar resolves a lone dependency inline,
    while two at one level cost an anyio TaskGroup per request."""

    driver: TurnDriver
    runner: TurnRunner
    gate: ShutdownGate
    ping_seconds: float = 15.0  # an SSE stream's keep-alive interval

    async def start(self, request: StartRequest) -> LiveTurn | Refusal:
        """Start a session and run its first turn (a replica shutting down refuses: 503)."""
        self.gate.check()
        return self._launched(await self.driver.open_start(request))

    async def proceed(self, request: ContinueRequest) -> LiveTurn | Refusal:
        """Validate and claim the next turn, then run it."""
        self.gate.check()
        return self._launched(await self.driver.open_continue(request))

    async def close(self, request: CloseRequest) -> SessionState | Refusal:
        return await self.driver.close(request)

    async def refuse_in_flight(self, session_id: SessionId) -> Refusal:
        """A turn refused because the caller knows its session's claim is held."""
        return await self.driver.refuse_in_flight(session_id)

    def _launched(self, opened: OpenTurn | Refusal) -> LiveTurn | Refusal:
        return opened if isinstance(opened, Refusal) else self.runner.launch(opened)
