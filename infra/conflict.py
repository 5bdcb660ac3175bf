"""How a store says a write lost a race, whatever the database, and what it does then."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Conflict(Exception):
    """A write lost a race: a unique key or the projection's version said no."""


class StoreCorrupted(RuntimeError):
    """A conflict that does not go away on a fresh read: the table disagrees with itself."""


# A conflict means another transaction changed the session between our read and our write;
# reading again decides again (usually a refusal, or contended). Locks make this rare, so a
# few attempts are plenty and a longer loop would only hide a bug.
ATTEMPTS = 3


async def retrying(attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `attempt` (a whole transaction: read, decide, write) until no conflict stops it."""
    for _ in range(ATTEMPTS):
        try:
            return await attempt()
        except Conflict:
            continue
    raise StoreCorrupted(f"{what} keeps conflicting: the table disagrees with itself")
