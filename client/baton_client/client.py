"""AsyncClient: the one implementation of the client's logic, on httpx.AsyncClient."""

from types import TracebackType

import httpx

from baton_client.errors import NoSession
from baton_client.models import Input, RecoveryStats
from baton_client.retry import RetryPolicy
from baton_client.session import AsyncSession
from baton_client.store import TokenStore
from baton_client.transport import Transport

# A buffered turn waits for the handler: give it time, and a retry covers the rest (a turn
# that outlasts the read timeout is answered `in-flight`, waited out, then replayed).
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class AsyncClient:
    """Talks to one Baton server (or load balancer). Sessions made by it share its
    connections, its retry policy and its recovery counters (`stats`)."""

    def __init__(
        self,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, headers=headers, transport=transport
        )
        self.stats = RecoveryStats()
        self.retry = retry or RetryPolicy()
        self._transport = Transport(http, self.retry, self.stats)

    def session(self, store: TokenStore | None = None, *, fresh: bool = False) -> AsyncSession:
        """The session `store` holds, or (if it holds none, or `fresh`) a session not started
        yet, saved in `store` from its first turn on: its next `send` or `stream` continues
        it, or starts it."""
        saved = store.load() if store is not None and not fresh else None
        return AsyncSession(self._transport, store, saved)

    def resume(self, store: TokenStore) -> AsyncSession:
        """The session `store` holds; NoSession if it holds none."""
        saved = store.load()
        if saved is None or (saved.session_id is None and saved.pending_key is None):
            raise NoSession("the token store holds no session to resume")
        return AsyncSession(self._transport, store, saved)

    async def start(self, input: Input, *, store: TokenStore | None = None) -> AsyncSession:
        """Start a session with its first turn; its outcome is `session.outcome`. A store
        holding a start whose reply was lost (a crash) reuses its key for the same input, so
        the server answers that start again instead of starting a second session."""
        saved = store.load() if store else None
        pending_start = saved is not None and saved.session_id is None
        session = AsyncSession(self._transport, store, saved if pending_start else None)
        await session.send(input)
        return session

    async def aclose(self) -> None:
        await self._transport.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
