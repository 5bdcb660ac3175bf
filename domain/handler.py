"""The turn-handler interface: the application's code that runs one turn."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from domain.identifiers import SessionId
from domain.json import JsonObject, JsonValue
from domain.outcomes import HandlerOutcome


class TurnSink(Protocol):
    """Where a transport receives a turn's live output. It adds framing, never rules."""

    async def record(self, seq: int, record: JsonValue) -> None:
        """A journal entry, already stored as event `seq` of the session."""
        ...

    async def delta(self, text: str) -> None:
        """A live increment (a model's token); never stored."""
        ...


@dataclass(frozen=True, slots=True)
class Turn:
    """What a handler sees of its turn, and how it speaks while it runs."""

    session_id: SessionId
    number: int
    input: JsonObject
    state: JsonValue  # what the previous turn committed; None on the first turn
    _record: Callable[[JsonValue], Awaitable[None]]
    _delta: Callable[[str], Awaitable[None]]

    async def record(self, record: JsonValue) -> None:
        """Append a journal entry. It is stored at once; a turn that does not commit voids it."""
        await self._record(record)

    async def delta(self, text: str) -> None:
        """Stream a live increment to the client."""
        await self._delta(text)


TurnHandler = Callable[[Turn], Awaitable[HandlerOutcome]]
"""An async callable: the turn in, Finished or Parked out. Raising fails the turn."""
