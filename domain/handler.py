"""The turn-handler interface: the application's code that runs one turn."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from baton.domain.identifiers import SessionId
from baton.domain.json import JsonObject, JsonValue
from baton.domain.outcomes import HandlerOutcome


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
"""An async callable: the turn in, Finished or Parked out. Raising fails the turn; raising
InvalidInput rejects the turn's input (PROTOCOL section 4)."""


class InvalidInput(Exception):
    """Raised by a handler whose turn's input it cannot take: the client's error, not the
    handler's (422 invalid-input). Nothing commits and the token stays valid."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


INPUT_TYPE = "input_type"  # the attribute a handler declares its input's type in
H = TypeVar("H")


def takes(input_type: type) -> Callable[[H], H]:
    """Declare the input a handler takes (a msgspec Struct, a dataclass, a TypedDict...):
    Baton checks every turn's input against it before it claims the session, refuses what
    does not match with 422 invalid-input, and publishes it in the OpenAPI schema."""

    def declare(handler: H) -> H:
        setattr(handler, INPUT_TYPE, input_type)
        return handler

    return declare


def input_type_of(handler: object) -> type | None:
    declared = getattr(handler, INPUT_TYPE, None)
    return declared if isinstance(declared, type) else None


InputCheck = Callable[[JsonObject], str | None]
"""Why an input does not match the handler's declared type, or None (injected: the domain
names the rule, a library checks it)."""
