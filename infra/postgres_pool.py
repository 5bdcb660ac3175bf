"""The one asyncpg pool a process keeps per PostgreSQL database, shared by the store and
the reader, and what an outage looks like from above it (StoreUnavailable)."""

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import asyncpg
import msgspec

from baton.domain.ports import StoreUnavailable

_json_encoder = msgspec.json.Encoder()
STATEMENT_LIFETIME = 10.0  # seconds a prepared statement (and its plan) is used at most

# What a dropped connection, a restarting server or a refused connection raise. Any of them
# means the statement's fate is unknown to us, so the caller gets StoreUnavailable (503).
OUTAGES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, starting up
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # not accepting connections
    # A connection terminated mid-operation can leave asyncpg's protocol state confused
    # ("cannot switch to state 12; another operation is in progress").
    asyncpg.exceptions.InternalClientError,
)


def json_text(value: Any) -> str:
    return _json_encoder.encode(value).decode()


async def _keep_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset hook, doing nothing on purpose.

    By default asyncpg resets every connection it takes back (RESET ALL, UNLISTEN *, CLOSE
    ALL, unlock advisory locks): one more round trip per store call, which cost as much as
    the store call itself. Baton sets no session state, listens to nothing and takes no
    session-level lock on pooled connections, so there is nothing to reset; asyncpg still
    rolls back a transaction left open before it calls this."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON in and out as Python values, encoded with msgspec rather than the stdlib.
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type,
            encoder=json_text,
            decoder=msgspec.json.decode,
            schema="pg_catalog",
            format="text",
        )


class PostgresPool:
    def __init__(self, dsn: str, *, size: int, pooled: bool = False) -> None:
        self._dsn = dsn
        self._size = size
        # Behind a transaction pooler (PgBouncer) the next transaction may run on another
        # server session, where a statement prepared by name does not exist (or another
        # client's does, under the same name). With no statement cache asyncpg prepares
        # every statement unnamed and parses it again in the round trip that runs it.
        self._statement_cache_size = 0 if pooled else 100  # asyncpg's default
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> "PostgresPool":
        # min_size=0: no connection at start-up, so a server whose database is down comes up
        # not-ready (see /readyz) and recovers when the database does.
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._size,
            init=_init_connection,
            reset=_keep_session_state,
            statement_cache_size=self._statement_cache_size,
            # asyncpg arms a timer at every release to close a connection idle this long,
            # and cancels it at the next acquire: two timer operations for every store call,
            # to free at most `size` connections. They stay open instead.
            max_inactive_connection_lifetime=0,
            # PostgreSQL plans a prepared statement once and keeps the plan. Made while a
            # table was tiny (a new deployment), it scans the table instead of its index,
            # and goes on doing so after the table has grown until autovacuum analyzes it.
            # A batched write (infra/postgres_batch_sql.py), planned for ten rows, is the
            # first to fall for it. Preparing every statement afresh this often bounds that.
            max_cached_statement_lifetime=STATEMENT_LIFETIME,
        )
        return self

    async def dispose(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL pool is not open")
        return self._pool

    def connections_in_use(self) -> int:
        """Connections checked out of the pool now (read at each /metrics scrape)."""
        if self._pool is None:
            return 0
        return int(self._pool.get_size() - self._pool.get_idle_size())

    async def expire_connections(self) -> None:
        """After an outage every pooled connection is dead: have them all replaced."""
        if self._pool is not None:
            await self._pool.expire_connections()


class _OnPool(Protocol):
    @property
    def pool(self) -> PostgresPool: ...


S = TypeVar("S", bound=_OnPool)
P = ParamSpec("P")
R = TypeVar("R")


def unavailable_on_outage(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Turn a database outage into StoreUnavailable, and make the pool drop every pooled
    connection: after a restart they are all dead, and each would fail one request more."""

    @functools.wraps(method)
    async def guarded(owner: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(owner, *args, **kwargs)
        except OUTAGES as error:
            await owner.pool.expire_connections()
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from error

    return guarded
