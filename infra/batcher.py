"""Group commit for one kind of write: what arrives while every lane is busy goes together.

Each write to PostgreSQL costs the server's process a round trip: about 70-90 µs of its CPU
for asyncpg, the event loop and the socket, however little the statement does, against
about 6 µs a row when one statement carries many (make bench, and README's Performance).
A Batcher lets up to `lanes` writes run at once, each alone, exactly as they would without
it, so a lone client waits for nothing. A write arriving while every lane is busy waits;
when a lane frees, everything waiting (up to `most`, one write per session) goes as one
batch, in a task of its own so that no caller's cancellation can cut it short for the rest.

A batch that fails as a whole for a reason that one write alone would not meet (a unique
key, a deadlock between batches) is not an answer for any of them: each is then sent alone,
by its caller. Any other failure (an outage) is every caller's.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

C = TypeVar("C")
R = TypeVar("R")


class SendAlone(Exception):
    """Raised by a batch whose statement failed as a whole but whose writes may each
    succeed alone (a unique key or a deadlock): nothing of it landed."""


class _Alone:
    """What a waiter is answered when its batch failed as a whole: send your write alone."""


ALONE = _Alone()


class Batcher(Generic[C, R]):
    def __init__(
        self,
        one: Callable[[C], Awaitable[R]],
        many: Callable[[Sequence[C]], Awaitable[Sequence[R]]],
        key: Callable[[C], Hashable],
        *,
        lanes: int,
        most: int,
    ) -> None:
        self._one = one  # a write alone, as without batching
        self._many = many  # several writes in one statement, one answer each, in order
        self._key = key  # a batch holds one write per key (session)
        self._lanes = lanes
        self._most = most
        self._busy = 0  # lanes in use: writes alone and batches in flight
        self._waiting: dict[asyncio.Future[R | _Alone], C] = {}  # in arrival order
        self._batches: set[asyncio.Task[None]] = set()  # kept until done

    async def submit(self, command: C) -> R:
        if self._busy < self._lanes and not self._waiting:
            return await self._alone(command)
        future: asyncio.Future[R | _Alone] = asyncio.get_running_loop().create_future()
        self._waiting[future] = command
        self._next_batch()  # a lane may have freed since the waiting ones were queued
        try:
            answer = await future
        except asyncio.CancelledError:
            self._waiting.pop(future, None)  # not sent yet: never will be
            raise
        if isinstance(answer, _Alone):
            return await self._alone(command)
        return answer

    async def _alone(self, command: C) -> R:
        self._busy += 1
        try:
            return await self._one(command)
        finally:
            self._busy -= 1
            self._next_batch()

    def _next_batch(self) -> None:
        """Send what waits, in batches, while a lane is free."""
        while self._waiting and self._busy < self._lanes:
            self._launch()

    def _launch(self) -> None:
        batch: dict[asyncio.Future[R | _Alone], C] = {}
        keys: set[Hashable] = set()
        # A caller cancelled a moment ago has not run its own clean-up yet: drop it here.
        for future in [future for future in self._waiting if future.done()]:
            del self._waiting[future]
        for future, command in self._waiting.items():
            key = self._key(command)
            if key not in keys:  # a second write to the same session waits for the next
                keys.add(key)
                batch[future] = command
                if len(batch) == self._most:
                    break
        for future in batch:
            del self._waiting[future]
        if not batch:
            return
        if len(batch) == 1:  # cheaper alone: its caller sends it, with no task or arrays
            next(iter(batch)).set_result(ALONE)
            return
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _send(self, batch: dict[asyncio.Future[R | _Alone], C]) -> None:
        try:
            answers: Sequence[R | _Alone] = await self._many(list(batch.values()))
        except SendAlone:
            answers = [ALONE] * len(batch)
        except asyncio.CancelledError:  # the loop is shutting down: so are its callers
            for future in batch:
                future.cancel()
            raise
        except Exception as error:  # every caller's: an outage, say
            for future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            self._busy -= 1
            self._next_batch()
        for future, answer in zip(batch, answers, strict=True):
            if not future.done():  # a caller cancelled meanwhile: its answer is dropped
                future.set_result(answer)
