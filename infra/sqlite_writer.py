"""The SQLite writer: one thread, one connection, transactions committed in groups.

SQLite allows one writer at a time and, with synchronous=FULL, every COMMIT waits for an
fsync, which costs far more than the statements. So the writer takes every transaction
that is waiting when it gets to work and runs them inside one BEGIN IMMEDIATE ... COMMIT,
each in a SAVEPOINT of its own: a transaction that fails rolls back alone, the others
commit, and all of them share one fsync (group commit). Nobody is answered before that
COMMIT returns, so an acknowledged write is as durable as with one COMMIT each. Under no
concurrency a group is one transaction, needing no savepoint: plain BEGIN ... COMMIT.

A caller pays one hand-off to this thread and one back (batched per group), never one per
statement.
"""

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

MAX_GROUP = 64  # transactions per COMMIT; bounds how long the lock is held at a time


@dataclass(slots=True)
class _Job(Generic[T]):
    work: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop


_STOP = None


def connect(path: str, *, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """The writer's connection: WAL, the synchronous level asked for, the busy timeout."""
    conn = sqlite3.connect(
        path,
        isolation_level=None,  # transactions are the writer's: BEGIN IMMEDIATE ... COMMIT
        check_same_thread=False,  # opened here, then used by the writer thread alone
        timeout=busy_timeout_ms / 1000,
    )
    # Rows stay tuples, named by each query's known column order (loaded_row): sqlite3.Row
    # finds a column by name with a scan of case-insensitive comparisons, which callgrind
    # counted at 2.5% of a turn.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    # A group's savepoints journal the pages its transactions change, and past 64 KiB SQLite
    # spills that journal to a temporary file: an open, writes and an unlink for one group
    # in three or four at c16. In memory it costs at most a group's changed pages.
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


class SqliteWriter:
    """`began(conn)` is called once each group holds the write lock, `undone()` whenever a
    group's BEGIN or COMMIT failed and took back every transaction in it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        began: Callable[[sqlite3.Connection], None] | None = None,
        undone: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self._began = began
        self._undone = undone
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="baton-sqlite-writer")
        self.commits = 0  # groups committed: how many fsyncs the writes cost
        self._thread.start()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` as one transaction on the writer; its result once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(work, future, loop))
        return await future

    async def stop(self) -> None:
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._conn.close()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            group = [job]
            stopping = False
            while len(group) < MAX_GROUP:
                try:
                    waiting = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if waiting is _STOP:
                    stopping = True
                    break
                group.append(waiting)
            self._commit_group(group)
            if stopping:
                return

    def _commit_group(self, group: list[_Job[Any]]) -> None:
        conn = self._conn
        results: list[tuple[bool, Any]]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._began is not None:
                self._began(conn)
            # Alone, a job needs no savepoint: if it fails, rolling back the whole
            # transaction takes back exactly its writes (two statements fewer per job, and
            # every job is alone when there is no concurrency).
            alone = len(group) == 1
            if alone:
                results = [_attempt(conn, group[0])]
            else:
                results = [self._run_isolated(conn, job) for job in group]
            if alone and not results[0][0]:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
                self.commits += 1
        except BaseException as error:  # BEGIN or COMMIT failed: nothing of the group holds
            if self._undone is not None:
                self._undone()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(False, error)] * len(group)
        _deliver(group, results)

    @staticmethod
    def _run_isolated(conn: sqlite3.Connection, job: _Job[Any]) -> tuple[bool, Any]:
        conn.execute("SAVEPOINT job")
        outcome = _attempt(conn, job)
        if not outcome[0]:
            conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return outcome


def _attempt(conn: sqlite3.Connection, job: _Job[Any]) -> tuple[bool, Any]:
    """(True, the job's result) or (False, what it raised)."""
    try:
        return True, job.work(conn)
    except BaseException as error:
        return False, error


def _deliver(group: list[_Job[Any]], results: list[tuple[bool, Any]]) -> None:
    """Hand each caller its result, with one wake-up per event loop for the whole group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job[Any], tuple[bool, Any]]]] = {}
    for job, result in zip(group, results, strict=True):
        by_loop.setdefault(job.loop, []).append((job, result))
    for loop, answered in by_loop.items():
        if not loop.is_closed():
            loop.call_soon_threadsafe(_settle, answered)


def _settle(answered: list[tuple[_Job[Any], tuple[bool, Any]]]) -> None:
    for job, (ok, value) in answered:
        if job.future.done():  # the caller was cancelled; the transaction stands regardless
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
