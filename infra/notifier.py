"""Wake-ups for whoever waits on a session in this process: a follower of its events, a
cancel waiting for its turn to stop.

A store wakes a session after every write to it, and on PostgreSQL the listener
(infra/postgres_listener.py) does the same for writes made by other replicas. A wake-up is
only a hint: waiters poll as well, so one that is missed delays them, never loses anything.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class Notifier:
    def __init__(self) -> None:
        self._watching: dict[str, set[asyncio.Event]] = {}

    def wake(self, session_id: str) -> None:
        for changed in self._watching.get(session_id, ()):
            changed.set()

    @contextmanager
    def watching(self, session_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the session may have changed, for as long as the block
        runs. Clear it before each look at the session, so no change falls in between."""
        changed = asyncio.Event()
        watchers = self._watching.setdefault(session_id, set())
        watchers.add(changed)
        try:
            yield changed
        finally:
            watchers.discard(changed)
            if not watchers:
                del self._watching[session_id]

    def watched(self, session_id: str) -> bool:
        return session_id in self._watching


async def changed_within(changed: asyncio.Event, seconds: float) -> bool:
    """Wait until `changed` is set or `seconds` pass; whether it was set."""
    try:
        async with asyncio.timeout(seconds):
            await changed.wait()
    except TimeoutError:
        return False
    return True
