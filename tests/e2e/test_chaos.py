"""The chaos run in its short form (`make chaos` runs the long one): replicas killed and the
database restarted under load, clients on baton_client that abandon streams, replay and
race, and an audit that finds nothing wrong."""

import ast
import sys
from pathlib import Path

import pytest

from tests.databases import require_postgres
from tests.e2e import chaos_clients
from tests.e2e.chaos import RECOVERY_PATHS, run
from tests.pgbouncer import PGBOUNCER

pytestmark = pytest.mark.e2e

# What the clients may import: the client library, the HTTP stack and the standard library.
CLIENT_IMPORTS = {"baton_client", "httpx"}


@pytest.mark.parametrize("through", ["postgresql", PGBOUNCER])
async def test_a_short_chaos_run_passes_the_audit(
    through: str, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """Directly, and through PgBouncer in transaction mode (the database's restarts then
    also cut PgBouncer's server connections under clients it had paired them with)."""
    require_postgres()
    bouncer = request.getfixturevalue("pgbouncer") if through == PGBOUNCER else None
    result = await run(
        seconds=22,
        session_count=200,
        workers=12,
        kill_every=2.5,
        restart_every=6,
        pgbouncer=bouncer,
    )
    report = capsys.readouterr().out
    assert result.problems == [], report
    # The run really was chaotic: replicas died, the database restarted, streams were cut
    # by the network and abandoned by their clients...
    assert result.kills >= 2, report
    assert result.restarts >= 1, report
    assert result.log.cuts > 0, report
    assert result.log.answers["stream abandoned part way"] > 0, report
    # ...and the clients recovered lost replies by every path each of those exercises: a
    # replay (an abandoned message sent again), a read (a new message after an abandoned
    # one) and a resumed event stream (a stream cut after its priming message).
    recovered = {path: result.stats.recoveries[path] for path in RECOVERY_PATHS}
    assert all(recovered.values()), (recovered, report)
    assert result.stats.retry_causes["503"] > 0, report  # the database restarts were seen


def test_the_clients_never_read_the_database() -> None:
    """The clients know what the API tells them: their module imports no store, driver,
    server code or test helper that could read the database (only the audit may)."""
    tree = ast.parse(Path(chaos_clients.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
        )
    }
    allowed = CLIENT_IMPORTS | (set(sys.stdlib_module_names) - {"sqlite3", "dbm"})
    assert imported - allowed == set()
