"""PgBouncer for tests: Debian's `pgbouncer` in transaction pooling mode, on a free port, in
front of the test PostgreSQL (tests/databases.py), started once per run by the `pgbouncer`
fixture (tests/conftest.py).

Test modules marked `pgbouncer` run their backend tests a third time, as backend
"pgbouncer": PostgreSQL with the database URL on PgBouncer and the direct URL on the server.
Without the binary (`.ci/system-packages` installs it) they skip loudly; under CI they fail.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from baton.infra.settings import Settings
from tests.databases import IN_CI, POSTGRES_ADMIN_URL, in_own_loop, require_postgres

PGBOUNCER = "pgbouncer"  # the backend: PostgreSQL through PgBouncer in transaction mode
STARTUP_SECONDS = 10

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
pidfile =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
; A server that refused a login is tried again soon, not after the default 15 s: the chaos
; run "restarts" the database for a second at a time.
server_login_retry = 0.2
ignore_startup_parameters = extra_float_digits
"""


def binary() -> str | None:
    """Where pgbouncer is: Debian puts it in /usr/sbin, outside a normal user's PATH."""
    return shutil.which(PGBOUNCER) or shutil.which(PGBOUNCER, path="/usr/sbin")


def require_pgbouncer() -> str:
    """The binary; skip (locally) or fail (under CI) without it."""
    require_postgres()
    found = binary()
    if found is None:
        message = "pgbouncer is not installed (bash .ci/system-packages installs it)"
        if IN_CI:
            pytest.fail(f"{message}; CI requires it", pytrace=False)
        pytest.skip(f"SKIPPING THE PGBOUNCER TESTS: {message}")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgBouncer:
    """A running pgbouncer; `url(direct)` is the same database through it."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "PgBouncer":
        server = make_url(POSTGRES_ADMIN_URL)
        (self.directory / "pgbouncer.ini").write_text(
            CONFIG.format(
                host=server.host or "127.0.0.1",
                port=server.port or 5432,
                listen_port=self.port,
                directory=self.directory,
            )
        )
        (self.directory / "userlist.txt").write_text(f'"{server.username or "postgres"}" ""\n')
        command = [self.executable, str(self.directory / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root; -u switches user first
            user = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")
            for path in (self.directory, *self.directory.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
            command[1:1] = ["-u", user.pw_name]
        with (self.directory / "pgbouncer.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited early:\n{self.log()}")
            try:
                in_own_loop(_select_one(self.url(POSTGRES_ADMIN_URL)))
                return
            except (OSError, asyncpg.PostgresError):
                time.sleep(0.05)
        raise TimeoutError(f"pgbouncer did not come up:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(errors="replace")

    def url(self, direct: str) -> str:
        """The database of `direct` (same user, same name) through this pgbouncer."""
        return make_url(direct).set(host="127.0.0.1", port=self.port).render_as_string(False)

    def environ(self, direct: str) -> dict[str, str]:
        """What a `baton serve` on `url(direct)` needs besides its --database-url."""
        return {"BATON_DATABASE_POOLER": "transaction", "BATON_DATABASE_DIRECT_URL": direct}

    def settings(self, direct: str) -> Settings:
        return Settings(
            database_url=self.url(direct), database_direct_url=direct, database_pooler="transaction"
        )


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def _select_one(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=2, statement_cache_size=0)
    try:
        await connection.execute("SELECT 1")
    finally:
        await connection.close()


@contextmanager
def running_pgbouncer() -> Iterator[PgBouncer]:
    """A pgbouncer for as long as the block runs (require_pgbouncer decides if there is one)."""
    executable = require_pgbouncer()
    # Not pytest's tmp_path: its base is private to this user, and pgbouncer may run as another.
    with tempfile.TemporaryDirectory(prefix="baton-pgbouncer-") as directory:
        bouncer = PgBouncer(executable, Path(directory))
        try:
            yield bouncer.start()
        finally:
            bouncer.stop()
