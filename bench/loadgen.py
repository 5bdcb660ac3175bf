"""The load generator, in a process of its own so its CPU time is its own to measure.

The benchmark's main process submits a LoadSpec to one long-lived worker process (started
once, so no scenario pays for an interpreter start-up) and gets a plain dict back: rate,
latency percentiles, refusals and errors by reason, and the worker's CPU share (its CPU time
over the measured window's wall time; 1.0 is one full core).
"""

import asyncio
import multiprocessing
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from bench.clients import (
    EchoClient,
    RestClient,
    ResumeClient,
    RetryClient,
    StartClient,
    VirtualClient,
    WebSocketClient,
)
from bench.measure import ERROR, OK, Tally, Window, clock
from bench.race import run_race

HOST = "127.0.0.1"
SLACK_SECONDS = 60.0  # setup and tear-down of a scenario, on a slow and shared machine

# workload -> (client factory, the unit of its rate)
WORKLOADS: dict[str, tuple[Callable[[str, int], VirtualClient], str]] = {
    "buffered": (RestClient, "turns/s"),
    "buffered-keyed": (lambda host, port: RestClient(host, port, keyed=True), "turns/s"),
    "sse": (lambda host, port: RestClient(host, port, stream=True), "turns/s"),
    "websocket": (WebSocketClient, "turns/s"),
    "start": (StartClient, "turns/s"),
    "resume": (ResumeClient, "streams/s"),
    "retry": (RetryClient, "replays/s"),
    "echo": (EchoClient, "req/s"),
}
RACE = "race"
J = TypeVar("J")  # a job's argument


@dataclass(frozen=True, slots=True)
class LoadSpec:
    workload: str  # a key of WORKLOADS, or RACE
    port: int
    concurrency: int
    warmup_seconds: float
    measure_seconds: float
    rounds: int = 0  # the race only
    server_pid: int | None = None  # whose CPU the window samples (bench/measure.py)


def deadline_seconds(spec: LoadSpec) -> float:
    """How long a scenario may take before it is declared hung (a server that stopped
    answering would otherwise stall the run forever)."""
    return spec.warmup_seconds + spec.measure_seconds + SLACK_SECONDS + spec.rounds * 5


def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Runs in the worker process."""
    if spec.workload == RACE:
        scenario = run_race(HOST, spec.port, spec.concurrency, spec.rounds)
    else:
        scenario = _run_clients(spec)
    return asyncio.run(_within_deadline(scenario, deadline_seconds(spec)))


async def _within_deadline(
    scenario: Coroutine[Any, Any, dict[str, Any]], seconds: float
) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(scenario, seconds)
    except TimeoutError:
        raise TimeoutError(f"the scenario did not finish within {seconds:.0f} s") from None


async def _run_clients(spec: LoadSpec) -> dict[str, Any]:
    factory, unit = WORKLOADS[spec.workload]
    clients = [factory(HOST, spec.port) for _ in range(spec.concurrency)]
    try:
        # Sessions are started (and connections opened) before the clock runs.
        await asyncio.gather(*(client.setup() for client in clients))
        window = Window(spec.warmup_seconds, spec.measure_seconds, spec.server_pid)
        tally = Tally()
        window.open()
        await asyncio.gather(*(_drive(client, window, tally) for client in clients))
        window.close()
        return tally.summary(window, unit)
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def _drive(client: VirtualClient, window: Window, tally: Tally) -> None:
    """One virtual client: a turn after the other until the window closes."""
    while (began := clock()) < window.end:
        try:
            result = await client.turn()
        except Exception as error:  # a dropped connection, a malformed reply: count it
            result = (ERROR, type(error).__name__)
        tally.add(result, began, clock(), window)
        if result[0] != OK and result[1] != "in-flight":  # in-flight: the token still holds
            try:
                await client.recover()
            except Exception as error:
                tally.errors[f"client-lost-{type(error).__name__}"] += 1
                return


class LoadGenerator:
    """The worker process, for the length of a `with` block."""

    def __init__(self) -> None:
        # spawn: a fresh interpreter, sharing nothing (threads, sockets) with this process.
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)

    def run(self, spec: LoadSpec) -> dict[str, Any]:
        return self._pool.submit(run_load, spec).result()

    def submit(self, job: Callable[[J], dict[str, Any]], spec: J) -> "Future[dict[str, Any]]":
        """Run another job (a module-level function, one picklable argument) in the worker,
        without waiting for it: the flood's owner runs there while the flood runs elsewhere."""
        return self._pool.submit(job, spec)

    def __enter__(self) -> "LoadGenerator":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
