"""Real databases for tests: a SQLite file, or a PostgreSQL database made and dropped here.

PostgreSQL is found at BATON_TEST_POSTGRES_URL (default: the local server, user postgres).
Locally, an unreachable server skips the PostgreSQL half loudly; under CI it fails.
"""

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

POSTGRESQL = "postgresql"
BACKENDS = ("sqlite", POSTGRESQL)
# The store contract also runs against the in-memory store (tests/domain/fakes.py), which is
# nothing but the domain's decisions on the shared skeleton: where a test only uses the port
# (tests/conftest.py reads the mark).
MEMORY = "memory"
EVERY_STORE = pytest.mark.every_store
POSTGRES_ADMIN_URL = os.environ.get(
    "BATON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

_unreachable: list[str] = []


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


T = TypeVar("T")


def in_own_loop(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end in a loop of its own, in a thread of its own: sync fixtures can
    call it while the session's loop is running (from an async fixture's setup, say)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def _run(statement: str) -> None:
    in_own_loop(_admin(statement))


def require_postgres() -> None:
    """Skip (locally) or fail (under CI) when PostgreSQL cannot be reached."""
    if not _unreachable:
        try:
            _run("SELECT 1")
            _unreachable.append("")
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            _unreachable.append(f"{type(error).__name__}: {error}")
    reason = _unreachable[0]
    if reason:
        message = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL} ({reason})"
        if IN_CI:
            pytest.fail(f"{message}; CI requires it", pytrace=False)
        pytest.skip(f"SKIPPING THE POSTGRESQL HALF OF THE SUITE: {message}")


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A new, empty database of `backend` for as long as the block runs; its async URL."""
    if backend == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite+aiosqlite:///{directory / f'baton-{secrets.token_hex(4)}.db'}"
        return
    require_postgres()
    name = f"baton_test_{os.getpid()}_{secrets.token_hex(4)}"
    _run(f'CREATE DATABASE "{name}"')
    try:
        admin = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{admin.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        _run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
