"""Fresh databases for one run: a PostgreSQL database created and dropped here, or a SQLite
file in the run's temporary directory; both migrated by `baton migrate`, as Baton's are."""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from baton.api.cli import main as baton_cli

# The server the tests use, unless the benchmark is told otherwise.
POSTGRES_ADMIN_URL = os.environ.get(
    "BATON_BENCH_POSTGRES_URL",
    os.environ.get("BATON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)


@dataclass(frozen=True, slots=True)
class PostgresDatabase:
    name: str
    host: str
    port: int
    user: str
    password: str

    @property
    def plain_url(self) -> str:
        """For psycopg."""
        secret = f":{self.password}" if self.password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{self.name}"

    @property
    def baton_url(self) -> str:
        """For Baton (asyncpg)."""
        return self.plain_url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _admin(statement: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)  # type: ignore[arg-type]  # names we generated


def postgres_version() -> str:
    with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


@contextmanager
def fresh_postgres(label: str) -> Iterator[PostgresDatabase]:
    admin = urlsplit(POSTGRES_ADMIN_URL)
    name = f"baton_bench_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield PostgresDatabase(
            name=name,
            host=admin.hostname or "127.0.0.1",
            port=admin.port or 5432,
            user=admin.username or "postgres",
            password=admin.password or "",
        )
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def fresh_sqlite_path(directory: Path, label: str) -> Path:
    """A path for a new SQLite database; it lives in the run's temporary directory, which is
    removed with everything in it (WAL and SHM files too) when the run ends."""
    return directory / f"{label}-{secrets.token_hex(3)}.db"


def migrate(database_url: str) -> None:
    """`baton migrate`: the schema exactly as `baton serve` builds it. The console script's
    own entry point is called in this process; a new interpreter for each database would
    cost a second of imports and measure nothing."""
    status = baton_cli(["migrate", "--database-url", database_url])
    if status != 0:
        raise RuntimeError(f"baton migrate --database-url {database_url} exited {status}")
