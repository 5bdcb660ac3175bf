"""A turn's live events on their way to their one reader (api/channel.py)."""

import asyncio

import pytest

from baton.api.channel import Channel


async def test_items_come_out_in_the_order_they_went_in() -> None:
    channel: Channel[int] = Channel()
    for item in (1, 2, 3):
        channel.put_nowait(item)
    assert channel.qsize() == 3
    assert [await channel.get() for _ in range(3)] == [1, 2, 3]
    assert channel.empty()


async def test_a_reader_waits_for_the_next_item_and_is_woken_by_it() -> None:
    channel: Channel[str] = Channel()
    reading = asyncio.create_task(channel.get())
    await asyncio.sleep(0)
    assert not reading.done()
    channel.put_nowait("end")
    assert await asyncio.wait_for(reading, 1) == "end"


async def test_a_reader_cancelled_while_waiting_leaves_the_channel_usable() -> None:
    channel: Channel[str] = Channel()
    reading = asyncio.create_task(channel.get())
    await asyncio.sleep(0)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    channel.put_nowait("kept")  # nothing was lost with the cancelled wait
    assert await asyncio.wait_for(channel.get(), 1) == "kept"


async def test_two_puts_before_the_reader_wakes_are_both_read() -> None:
    channel: Channel[int] = Channel()
    reading = asyncio.create_task(channel.get())
    await asyncio.sleep(0)
    channel.put_nowait(1)
    channel.put_nowait(2)
    assert await reading == 1
    assert await channel.get() == 2


async def test_a_second_reader_at_once_is_refused_not_left_hanging() -> None:
    channel: Channel[int] = Channel()
    first = asyncio.create_task(channel.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one reader"):
        await channel.get()
    channel.put_nowait(7)
    assert await first == 7


def test_get_nowait_on_an_empty_channel_raises() -> None:
    with pytest.raises(IndexError):
        Channel[int]().get_nowait()
