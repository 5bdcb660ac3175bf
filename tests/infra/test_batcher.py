"""infra/batcher.py: group commit's queueing, without a database.

`one` and `many` here are gates the test opens, so what is in flight and what waits at
any moment is the test's to arrange.
"""

import asyncio
from collections.abc import Callable, Sequence

import pytest

from baton.infra.batcher import Batcher, SendAlone


class Writes:
    """A fake database: records what was sent alone and in batches; each write (or batch)
    lands when the test releases it."""

    def __init__(self) -> None:
        self.alone: list[str] = []
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()  # writes alone land once it is set
        self.batch_gate = asyncio.Event()  # and batches once this one is
        self.batch_error: BaseException | None = None
        self.as_one_lands: Callable[[], None] | None = None  # runs as a write alone lands

    async def one(self, command: str) -> str:
        self.alone.append(command)
        await self.gate.wait()
        if self.as_one_lands is not None:
            self.as_one_lands()
        return f"{command}!"

    async def many(self, commands: Sequence[str]) -> list[str]:
        self.batches.append(list(commands))
        await self.batch_gate.wait()
        if self.batch_error is not None:
            error, self.batch_error = self.batch_error, None
            raise error
        return [f"{command}!" for command in commands]

    def open(self) -> None:
        self.gate.set()
        self.batch_gate.set()


def batcher(writes: Writes, *, lanes: int = 1, most: int = 64) -> Batcher[str, str]:
    return Batcher(writes.one, writes.many, lambda command: command[0], lanes=lanes, most=most)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def behind_a_busy_lane(
    batching: Batcher[str, str], *commands: str
) -> tuple["asyncio.Future[str]", list["asyncio.Future[str]"]]:
    """a1 sent alone and still in flight on the one lane, then `commands` waiting."""
    first = asyncio.ensure_future(batching.submit("a1"))
    await settle()
    waiting = [asyncio.ensure_future(batching.submit(command)) for command in commands]
    await settle()
    return first, waiting


async def test_a_write_with_a_free_lane_goes_alone_at_once() -> None:
    writes = Writes()
    writes.open()
    assert await batcher(writes, lanes=2).submit("a1") == "a1!"
    assert (writes.alone, writes.batches) == (["a1"], [])


async def test_writes_arriving_while_every_lane_is_busy_go_together() -> None:
    writes = Writes()
    batching = batcher(writes, lanes=1)
    first, waiting = await behind_a_busy_lane(batching, *("b1", "c1", "d1"))
    assert writes.batches == []  # nothing goes while the one lane is busy
    writes.open()
    assert await asyncio.gather(first, *waiting) == ["a1!", "b1!", "c1!", "d1!"]
    assert (writes.alone, writes.batches) == (["a1"], [["b1", "c1", "d1"]])


async def test_a_batch_holds_one_write_per_session_and_at_most_most() -> None:
    writes = Writes()
    batching = batcher(writes, lanes=1, most=2)
    first, waiting = await behind_a_busy_lane(batching, *("b1", "b2", "c1", "d1"))
    writes.open()
    assert await asyncio.gather(first, *waiting) == ["a1!", "b1!", "b2!", "c1!", "d1!"]
    assert writes.batches[0] == ["b1", "c1"]  # b2 waits for b1's batch to land
    assert ["b2", "d1"] in writes.batches


async def test_a_lone_waiter_is_sent_alone() -> None:
    writes = Writes()
    batching = batcher(writes, lanes=1)
    first = asyncio.ensure_future(batching.submit("a1"))
    await settle()
    second = asyncio.ensure_future(batching.submit("b1"))
    await settle()
    writes.open()
    assert await asyncio.gather(first, second) == ["a1!", "b1!"]
    assert (writes.alone, writes.batches) == (["a1", "b1"], [])


async def test_a_batch_failing_as_a_whole_sends_each_write_alone() -> None:
    writes = Writes()
    writes.batch_error = SendAlone("a unique key said no")
    batching = batcher(writes, lanes=1)
    first, waiting = await behind_a_busy_lane(batching, *("b1", "c1"))
    writes.open()
    assert await asyncio.gather(first, *waiting) == ["a1!", "b1!", "c1!"]
    assert writes.batches == [["b1", "c1"]]
    assert sorted(writes.alone) == ["a1", "b1", "c1"]


async def test_any_other_failure_of_a_batch_is_every_callers() -> None:
    writes = Writes()
    writes.batch_error = OSError("the database went away")
    batching = batcher(writes, lanes=1)
    first, waiting = await behind_a_busy_lane(batching, *("b1", "c1"))
    writes.open()
    assert await first == "a1!"
    for caller in waiting:
        with pytest.raises(OSError, match="went away"):
            await caller
    assert writes.alone == ["a1"]  # nobody retried it alone: its fate is unknown


async def test_a_caller_cancelled_while_waiting_is_never_sent() -> None:
    writes = Writes()
    batching = batcher(writes, lanes=1)
    first = asyncio.ensure_future(batching.submit("a1"))
    await settle()
    waiting = {c: asyncio.ensure_future(batching.submit(c)) for c in ("b1", "c1", "d1")}
    await settle()
    waiting["c1"].cancel()
    await settle()
    writes.open()
    assert await asyncio.gather(first, waiting["b1"], waiting["d1"]) == ["a1!", "b1!", "d1!"]
    assert writes.batches == [["b1", "d1"]]


async def test_a_caller_cancelled_while_its_batch_is_in_flight_cuts_it_short_for_no_one() -> None:
    writes = Writes()
    batching = batcher(writes, lanes=1)
    first = asyncio.ensure_future(batching.submit("a1"))
    await settle()
    waiting = {c: asyncio.ensure_future(batching.submit(c)) for c in ("b1", "c1")}
    await settle()
    writes.gate.set()
    assert await first == "a1!"
    await settle()
    assert writes.batches == [["b1", "c1"]]  # in flight
    waiting["b1"].cancel()
    await settle()
    writes.batch_gate.set()
    assert await waiting["c1"] == "c1!"
    assert waiting["b1"].cancelled()
    # The lane it held is free again: the next write goes alone at once.
    assert await batching.submit("e1") == "e1!"
    assert writes.alone[-1] == "e1"


async def test_a_caller_cancelled_as_the_lane_frees_is_dropped_before_its_clean_up() -> None:
    writes = Writes()
    batching = batcher(writes, lanes=1)
    first, waiting = await behind_a_busy_lane(batching, "b1")
    # Cancelled in the very step that frees the lane: its future is done, but its own
    # clean-up has not run when the lane looks for what waits.
    writes.as_one_lands = waiting[0].cancel
    writes.open()
    assert await first == "a1!"
    await settle()
    assert waiting[0].cancelled()
    assert writes.alone == ["a1"]
    writes.as_one_lands = None
    assert await batching.submit("c1") == "c1!"  # and the lane is free again
