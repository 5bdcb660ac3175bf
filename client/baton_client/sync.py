"""Client and Session: the blocking API, a thin wrapper over AsyncClient.

Why a private event loop thread rather than a second implementation on httpx.Client: the
retry, recovery and token logic is the delicate part, and it exists once (session.py). Each
Client owns one daemon thread running one event loop, on which its AsyncClient (and so its
connection pool) lives; a blocking call submits the coroutine to that loop and waits for its
result. It works from any thread, including one already running an event loop of its own
(asyncio.run inside it would fail). Iterators pull one event at a time across the thread and
close the async generator on the loop when they are closed or garbage collected. If the
waiting thread is interrupted (Ctrl-C), the coroutine is cancelled. Calls from several
threads are safe: they all run on the one loop, and a session still runs one turn at a time;
`cancel()` from another thread stops a turn another thread is waiting for.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from baton_client.client import DEFAULT_TIMEOUT, AsyncClient
from baton_client.models import Event, Input, Outcome, RecoveryStats, SessionView, StoredEvent
from baton_client.retry import RetryPolicy
from baton_client.session import AsyncSession
from baton_client.store import TokenStore

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="baton-client-loop", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a blocking Baton call from inside its own loop: use AsyncClient")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C while waiting: stop the work too
            raise

    def iterate(self, events: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(events)
            except StopAsyncIteration:
                return False, None

        async def close() -> None:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                more, item = self.run(step())
                if not more:
                    return
                yield item  # type: ignore[misc] # T when more is True
        finally:
            if not self.loop.is_closed():
                self.run(close())

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Session:
    """The blocking face of AsyncSession: the same methods, the same state."""

    def __init__(self, loop: _LoopThread, session: AsyncSession) -> None:
        self._loop = loop
        self.aio = session  # the AsyncSession underneath

    @property
    def session_id(self) -> str | None:
        return self.aio.session_id

    @property
    def continuation_token(self) -> str | None:
        return self.aio.continuation_token

    @property
    def turn(self) -> int | None:
        return self.aio.turn

    @property
    def outcome(self) -> Outcome | None:
        return self.aio.outcome

    @property
    def started(self) -> bool:
        return self.aio.started

    @property
    def pending(self) -> bool:
        return self.aio.pending

    @property
    def closed(self) -> bool:
        return self.aio.closed

    def send(self, input: Input) -> Outcome:
        return self._loop.run(self.aio.send(input))

    def stream(self, input: Input) -> Iterator[Event]:
        return self._loop.iterate(self.aio.stream(input))

    def read(self) -> SessionView:
        return self._loop.run(self.aio.read())

    def events(self, after: int = 0) -> list[StoredEvent]:
        return self._loop.run(self.aio.events(after))

    def follow(self, after: int = 0) -> Iterator[StoredEvent]:
        return self._loop.iterate(self.aio.follow(after))

    def cancel(self, wait: float = 10.0) -> SessionView:
        return self._loop.run(self.aio.cancel(wait))

    def close(self) -> None:
        self._loop.run(self.aio.close())


class Client:
    """The blocking client: see AsyncClient for the arguments."""

    def __init__(
        self,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._loop = _LoopThread()

        async def make() -> AsyncClient:  # on the loop that will use it
            return AsyncClient(
                base_url, retry=retry, timeout=timeout, headers=headers, transport=transport
            )

        try:
            self.aio = self._loop.run(make())
        except BaseException:
            self._loop.stop()
            raise

    @property
    def stats(self) -> RecoveryStats:
        return self.aio.stats

    def session(self, store: TokenStore | None = None, *, fresh: bool = False) -> Session:
        return Session(self._loop, self.aio.session(store, fresh=fresh))

    def resume(self, store: TokenStore) -> Session:
        return Session(self._loop, self.aio.resume(store))

    def start(self, input: Input, *, store: TokenStore | None = None) -> Session:
        return Session(self._loop, self._loop.run(self.aio.start(input, store=store)))

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self.aio.aclose())
            self._loop.stop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
