"""The supervisor runs a handler in the calling task under one timer (domain/supervision.py):
how it stops a handler, and that it tells its own stop from a cancellation from outside."""

import asyncio

import pytest

from baton.domain.outcomes import Contended
from baton.domain.supervision import ClaimLost, StopRequested, Supervisor, TimedOut, Timing


class Keeper:
    """The turn's side of the heartbeat: counts renewals, and can say the claim is lost."""

    def __init__(self) -> None:
        self.renewals = 0
        self.lost: Contended | None = None

    async def renew(self) -> Contended | None:
        self.renewals += 1
        return self.lost

    async def asked_to_stop(self) -> bool:
        return False


def supervisor(keeper: Keeper, *, beat: float = 10.0, timeout: float = 10.0) -> Supervisor:
    timing = Timing(beat_seconds=beat, timeout_seconds=timeout, ask_store_seconds=0)
    return Supervisor(keeper.renew, keeper.asked_to_stop, timing)


def cancels_pending() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling()


async def sleeps(seconds: float = 10.0) -> str:
    await asyncio.sleep(seconds)
    return "finished"


async def test_a_quick_handler_returns_its_result_and_leaves_no_timer_or_task_behind() -> None:
    keeper = Keeper()
    before = asyncio.all_tasks()
    assert await supervisor(keeper).run(sleeps(0)) == "finished"
    assert asyncio.all_tasks() == before  # the handler ran in this task; no keeper started
    assert keeper.renewals == 0


async def test_a_turn_past_its_timeout_is_stopped_in_its_own_task_with_no_cancel_left() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimedOut):
        await supervisor(Keeper(), timeout=0.02).run(sleeps())
    assert loop.time() - began < 0.5  # at its timeout, not at the first watch (1 s)
    # Withdrawn: a cancel request left pending would break the next asyncio.timeout here.
    assert cancels_pending() == 0


async def test_a_turn_that_outlives_its_first_watch_is_kept_then_stopped_at_its_timeout() -> None:
    keeper = Keeper()
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TimedOut):
        await supervisor(keeper, beat=0.01, timeout=0.1).run(sleeps())
    assert loop.time() - began >= 0.1  # the timer moved on to the timeout at the first watch
    assert keeper.renewals >= 2  # and the keeper started there renewed the lease meanwhile


async def test_a_claim_taken_over_stops_the_handler_with_claim_lost() -> None:
    keeper = Keeper()
    keeper.lost = Contended(current=7)
    with pytest.raises(ClaimLost) as lost:
        await supervisor(keeper, beat=0.01).run(sleeps())
    assert lost.value.contended == Contended(current=7)
    assert cancels_pending() == 0


async def test_a_stop_requested_in_this_process_stops_the_handler_at_the_next_watch() -> None:
    watched = supervisor(Keeper(), beat=0.01)
    asyncio.get_running_loop().call_later(0.005, watched.request_stop)
    with pytest.raises(StopRequested):
        await watched.run(sleeps())


async def test_the_handler_sees_the_cancellation_and_may_clean_up() -> None:
    cleaned = asyncio.Event()

    async def cleans_up() -> str:
        try:
            return await sleeps()
        finally:
            cleaned.set()

    with pytest.raises(TimedOut):
        await supervisor(Keeper(), timeout=0.01).run(cleans_up())
    assert cleaned.is_set()


async def test_a_handler_that_swallows_the_timeout_returns_its_result_with_no_cancel_left() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "late"  # as it did in a task of its own: the result stands
        return "never"

    assert await supervisor(Keeper(), timeout=0.01).run(stubborn()) == "late"
    assert cancels_pending() == 0


async def test_a_cancel_from_outside_is_not_mistaken_for_the_timeout() -> None:
    async def turn() -> str:
        return await supervisor(Keeper(), timeout=10.0).run(sleeps())

    running = asyncio.create_task(turn())
    await asyncio.sleep(0.01)
    running.cancel()  # a replica shutting down
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_a_cancel_from_outside_on_top_of_the_timeout_stays_a_cancel() -> None:
    async def shut_down_while_timing_out() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # the timeout's; then the replica stops as well
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
        return "never"

    async def turn() -> str:
        return await supervisor(Keeper(), timeout=0.01).run(shut_down_while_timing_out())

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(turn())


async def test_a_handlers_own_cancelled_error_is_not_taken_for_a_stop_of_ours() -> None:
    async def raises_cancelled() -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await supervisor(Keeper()).run(raises_cancelled())


async def test_a_handler_that_swallows_a_stop_request_is_cancelled_again_at_its_timeout() -> None:
    swallowed = asyncio.Event()

    async def ignores_the_first_stop() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # the stop request: swallowed
            swallowed.set()
        await asyncio.sleep(10)  # the timeout cancels it here
        return "never"

    watched = supervisor(Keeper(), beat=0.01, timeout=0.1)
    watched.request_stop()
    with pytest.raises(TimedOut):
        await watched.run(ignores_the_first_stop())
    assert swallowed.is_set()
    assert cancels_pending() == 0
