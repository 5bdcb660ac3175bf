"""The one asyncpg pool a process keeps per PostgreSQL database, shared by the store and
the reader, and what an outage looks like from above it (StoreUnavailable)."""

import contextlib
import functools
from collections.abc import Callable, Coroutine
from types import TracebackType
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
    """asyncpg's pool, with the connections it lends kept at hand between uses.

    Taking a connection from asyncpg's pool and giving it back costs about 15 µs of CPU and
    two passes of the event loop (its release runs in a task of its own, under
    `asyncio.shield`): for a turn's two one-statement writes, more than the statements'
    own Python. So `connection()` keeps up to `keep` connections that came back cleanly
    and lends them again at the cost of a list's pop and append. One that comes back with
    an exception (a failed or cancelled statement, a transaction cut short) goes back to
    asyncpg, which knows how to clean it up or close it, and so do the kept ones when the
    pool closes. One the server closed, and the kept ones when an outage expires the pool,
    are ended at once instead (see _drop_kept)."""

    def __init__(self, dsn: str, *, size: int, pooled: bool = False) -> None:
        self._dsn = dsn
        self._size = size
        # Half the pool at most, so that a burst of hot-path writes cannot leave the kept
        # ones idle here while a reader waits on asyncpg for a connection.
        self._keep = max(1, size // 2)
        self._kept: list[asyncpg.pool.PoolConnectionProxy] = []
        self._generation = 0  # bumped by expire_connections: older connections go back
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
            await self._give_back_kept()
            await self._pool.close()

    def connection(self) -> "_Lent":
        """A connection for one `async with` block: a kept one if there is one."""
        return _Lent(self)

    def _keeps(self, conn: asyncpg.pool.PoolConnectionProxy, taken: int) -> bool:
        """Whether `conn`, back cleanly, is kept (else it goes back to asyncpg)."""
        if (
            taken == self._generation
            and len(self._kept) < self._keep
            and _open(conn)
            and not conn.is_in_transaction()
        ):
            self._kept.append(conn)
            return True
        return False

    async def _give_back_kept(self) -> None:
        """At close: the kept connections go back to asyncpg, which closes them gracefully."""
        kept, self._kept = self._kept, []
        for conn in kept:
            # One the server closed meanwhile may already be asyncpg's again.
            with contextlib.suppress(asyncpg.InterfaceError, asyncpg.InternalClientError):
                await self.db.release(conn)

    def _drop_kept(self) -> None:
        """After an outage: the kept connections are dead or stale, so they are ended here
        and now. Not given back with asyncpg's release: that runs a moment later in a task
        of its own, by which time the server's closing of the same connection may have
        given it back already, and the release fails (`InternalClientError`)."""
        kept, self._kept = self._kept, []
        for conn in kept:
            _end(conn)

    @property
    def db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL pool is not open")
        return self._pool

    def connections_in_use(self) -> int:
        """Connections checked out of the pool now (read at each /metrics scrape)."""
        if self._pool is None:
            return 0
        return int(self._pool.get_size() - self._pool.get_idle_size()) - len(self._kept)

    async def expire_connections(self) -> None:
        """After an outage every pooled connection is dead: have them all replaced."""
        if self._pool is not None:
            self._generation += 1
            self._drop_kept()
            await self._pool.expire_connections()


class _Lent:
    """`async with pool.connection() as conn`: a plain class, as a generator-based context
    manager would cost more than what it saves."""

    __slots__ = ("_conn", "_pool", "_taken")

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool
        self._taken = pool._generation
        self._conn: asyncpg.pool.PoolConnectionProxy | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        pool = self._pool
        conn = pool._kept.pop() if pool._kept else None
        if conn is not None and not _open(conn):  # the server ended it while kept
            _end(conn)  # asyncpg reconnects its holder when next asked
            conn = None
        if conn is None:
            conn = await pool.db.acquire()
        self._conn = conn
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if exc_type is None and self._pool._keeps(conn, self._taken):
                return
            if _open(conn):
                await self._pool.db.release(conn)  # asyncpg rolls back, waits out a cancel
            else:
                _end(conn)  # lost with the server: nothing to clean, and no release to race


def _open(conn: asyncpg.pool.PoolConnectionProxy) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # closed, and already taken back by asyncpg
        return False


def _end(conn: asyncpg.pool.PoolConnectionProxy) -> None:
    """Close a kept connection at once; asyncpg takes its holder back as it does so (its
    release would close a closed one the same way)."""
    with contextlib.suppress(asyncpg.InterfaceError):  # asyncpg has it back already
        conn.terminate()


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
