"""The app in-process, on the run's real database, with a handler tests can hold mid-turn."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from httpx import ASGITransport, AsyncClient
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.api.demo import demo_handler
from baton.domain.handler import Turn
from baton.domain.outcomes import Finished, Parked
from baton.infra.settings import Settings


class HeldTurns:
    """The demo handler, except that a turn whose message is "/hold" waits to be let go."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.entered = asyncio.Event()
        self.let_go = asyncio.Event()

    async def __call__(self, turn: Turn) -> Finished | Parked:
        if turn.input.get("message") == "/hold":
            self.entered.set()
            await self.let_go.wait()
        return await demo_handler(turn)


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan, entered and left by one task of its own.

    pytest-asyncio sets a fixture up and tears it down in different tasks, and the
    lifespan's cancel scope must be left by the task that entered it.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        waiting.cancel()
        await task  # start-up failed: raise why
        raise TimeoutError("the app did not start in 30 s")
    try:
        yield
    finally:
        stop.set()
        await task


def in_process_client(app: Litestar) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://baton.test")


@pytest.fixture(scope="session")
def held_turns() -> HeldTurns:
    return HeldTurns()


@pytest.fixture(scope="session")
async def session_client(
    settings: Settings, engine: AsyncEngine, held_turns: HeldTurns
) -> AsyncIterator[AsyncClient]:
    """httpx's ASGI transport runs the app in the test's own loop, so requests really run
    concurrently (Litestar's AsyncTestClient runs each one to its end in another thread)."""
    # `engine` is only asked for so the database is migrated before the app starts.
    app = create_app(settings, handler=held_turns)
    async with running(app), in_process_client(app) as client:
        yield client


@pytest.fixture
def client(session_client: AsyncClient, held_turns: HeldTurns) -> AsyncClient:
    held_turns.reset()
    return session_client
