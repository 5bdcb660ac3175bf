"""`make mutants`: break the core rules one line at a time and check that a test notices.

Each mutant replaces one exact piece of source text (it must occur exactly once, so a
mutant that no longer applies fails loudly instead of passing silently) and runs the tests
that guard it. A mutant is *killed* when those tests fail; a mutant that survives is a
promise the suite does not keep. The source is restored after each mutant, whatever
happens. Not part of `make test`: it runs the selected tests once per mutant.

    python -m tests.mutants            # every mutant, then the table; exit 1 if any survived
    python -m tests.mutants -k commit  # only mutants whose name contains "commit"
"""

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository
    original: str
    mutated: str
    tests: tuple[str, ...]  # pytest paths or node ids


STORE = "tests/infra/test_store.py"
PARITY = "tests/infra/test_parity.py"
BATCH_PARITY = "tests/infra/test_batch_parity.py"
BATCHER = "tests/infra/test_batcher.py"
DECISIONS = "tests/domain/test_decisions.py"
LEASES = "tests/infra/test_leases.py"

POOL = "tests/infra/test_postgres_pool.py"
SUPERVISION = "tests/domain/test_supervision.py"

MUTANTS = (
    Mutant(
        "pool: a connection back with an exception is kept",
        "infra/postgres_pool.py",
        "if exc_type is None and self._pool._keeps(conn, self._taken):",
        "if self._pool._keeps(conn, self._taken):",
        (POOL,),
    ),
    Mutant(
        "pool: a connection lent before an outage is kept after it",
        "infra/postgres_pool.py",
        "            taken == self._generation\n",
        "            True\n",
        (POOL,),
    ),
    Mutant(
        "stale token claims (domain)",
        "domain/decisions.py",
        "    if presented != state.token_digest:\n        return refusals.STALE_TOKEN\n",
        "",
        (DECISIONS,),
    ),
    Mutant(
        "refusal order: closed before stale-token",
        "domain/decisions.py",
        "    if presented != state.token_digest:\n        return refusals.STALE_TOKEN\n",
        "    if state.status is SessionStatus.CLOSED:\n        return refusals.closed(session_id)\n"
        "    if presented != state.token_digest:\n        return refusals.STALE_TOKEN\n",
        (DECISIONS,),
    ),
    Mutant(
        "refusal order: in-flight before stale-token",
        "domain/decisions.py",
        "    if presented != state.token_digest:\n        return refusals.STALE_TOKEN\n",
        "    if state.status is SessionStatus.IN_FLIGHT and state.lease is not None"
        " and not state.lease.lapsed(at):\n"
        "        return refusals.IN_FLIGHT\n"
        "    if presented != state.token_digest:\n        return refusals.STALE_TOKEN\n",
        (DECISIONS,),
    ),
    Mutant(
        "lease expiry ignored",
        "domain/events.py",
        "        return self.until <= at",
        "        return False",
        (LEASES,),
    ),
    Mutant(
        "PostgreSQL claim without the token condition",
        "infra/postgres_sql.py",
        "WHERE session_id = $1 AND token_digest = $2 AND status = $6",
        "WHERE session_id = $1 AND $2::text IS NOT NULL AND status = $6",
        (STORE,),
    ),
    Mutant(
        "PostgreSQL commit without the consumed-token condition",
        "infra/postgres_sql.py",
        "       AND token_digest IS NOT DISTINCT FROM $12\n",
        "       AND ($12::text IS NULL OR $12::text IS NOT NULL)\n",
        (STORE, PARITY),
    ),
    Mutant(
        "commit without the consumed-token check (domain, so every store's skeleton)",
        "domain/holding.py",
        "    if state.token_digest != command.consumed:\n        return _contended(state)\n",
        "",
        (DECISIONS, STORE),
    ),
    Mutant(
        "PostgreSQL claim fast path ignores a turn in flight",
        "infra/postgres_sql.py",
        "WHERE session_id = $1 AND token_digest = $2 AND status = $6",
        "WHERE session_id = $1 AND token_digest = $2 AND $6::text IS NOT NULL",
        (PARITY,),
    ),
    Mutant(
        "PostgreSQL record/renewal fast path ignores which claim holds",
        "infra/postgres_sql.py",
        "WHERE session_id = $1 AND claim_turn = $2 AND claim_seq = $3\n RETURNING",
        "WHERE session_id = $1 AND claim_turn = $2 AND $3::int IS NOT NULL\n RETURNING",
        (PARITY,),
    ),
    Mutant(
        "PostgreSQL commit fast path ignores which claim holds",
        "infra/postgres_sql.py",
        "WHERE session_id = $1 AND claim_turn = $2 AND claim_seq = $3\n       AND",
        "WHERE session_id = $1 AND claim_turn = $2 AND $3::int IS NOT NULL\n       AND",
        (PARITY,),
    ),
    Mutant(
        "PostgreSQL batched claim ignores the session's owner",
        "infra/postgres_batch_sql.py",
        "       AND (s.owner IS NULL OR i.principal IS NULL OR s.owner = i.principal)\n",
        "       AND (i.principal IS NULL OR i.principal IS NOT NULL)\n",
        (BATCH_PARITY,),
    ),
    Mutant(
        "PostgreSQL batched commit ignores which claim holds",
        "infra/postgres_batch_sql.py",
        "AND s.claim_seq = i.claim_at",
        "AND i.claim_at IS NOT NULL",
        (BATCH_PARITY,),
    ),
    Mutant(
        "group commit puts two writes to one session in a batch",
        "infra/batcher.py",
        "            if key not in keys:",
        "            if key is not None:",
        (BATCHER,),
    ),
    Mutant(
        "another principal's session is visible (domain)",
        "domain/principals.py",
        "    return state if state.owner == principal else None",
        "    return state",
        ("tests/domain/test_principals.py", "tests/api/test_principals.py"),
    ),
    Mutant(
        "PostgreSQL claim fast path ignores the session's owner",
        "infra/postgres_sql.py",
        "       AND (owner IS NULL OR $11::varchar IS NULL OR owner = $11::varchar)\n",
        "       AND ($11::varchar IS NULL OR $11::varchar IS NOT NULL)\n",
        (PARITY,),
    ),
    Mutant(
        "a SQLite transaction alone in its group committed although it failed",
        "infra/sqlite_writer.py",
        "            if alone and not results[0][0]:\n",
        "            if False:\n",
        ("tests/infra/test_sqlite_writer.py",),
    ),
    Mutant(
        "the principal left out of the hash-chained data",
        "infra/codec.py",
        '        data["principal"] = event.principal\n',
        "        pass\n",
        ("tests/api/test_principals.py",),
    ),
    Mutant(
        "a live stream's queue unbounded",
        "api/live.py",
        "        if self._queue.qsize() >= self._buffer:\n",
        "        if False:\n",
        ("tests/e2e/test_capacity.py",),
    ),
    Mutant(
        "--max-turns ignored",
        "api/live.py",
        "len(self._tasks) + self._opening >= self._max_turns:",
        "False:",
        ("tests/e2e/test_capacity.py",),
    ),
    Mutant(
        "the refusal limit never blocks",
        "api/refusal_limit.py",
        "        if refused < self._limit:\n",
        "        if True:\n",
        ("tests/api/test_refusal_limit.py",),
    ),
    Mutant(
        "a blocked client's 429s are not paced",
        "api/refusal_limit.py",
        "        return slot <= now or await self._gate.hold(slot - now)\n",
        "        return True\n",
        ("tests/api/test_refusal_pace.py",),
    ),
    Mutant(
        "SQLite group commit: BEGIN IMMEDIATE -> BEGIN",
        "infra/sqlite_writer.py",
        'conn.execute("BEGIN IMMEDIATE")',
        'conn.execute("BEGIN")',
        ("tests/e2e/test_replicas.py",),
    ),
    Mutant(
        "SQLite store: synchronous=OFF",
        "infra/sqlite_writer.py",
        'conn.execute(f"PRAGMA synchronous={synchronous}")',
        'conn.execute("PRAGMA synchronous=OFF")',
        ("tests/infra/test_sqlite_engine.py",),
    ),
    Mutant(
        "SQLite writer: a commit through another connection goes unnoticed",
        "infra/sqlite_store.py",
        "began=recent.began,",
        "began=None,",
        ("tests/infra/test_sqlite_recent.py", "tests/e2e/test_replicas.py"),
    ),
    Mutant(
        "SQLite writer: a refusal leaves the session's side-chain heads kept",
        "infra/sqlite_store.py",
        "        recent.drop(session_id)  # the one place side chains move",
        "        pass  # the one place side chains move",
        ("tests/infra/test_sqlite_recent.py",),
    ),
    Mutant(
        "the indexes on tokens and refusal places no longer unique",
        "migrations/versions/0010_partial_indexes.py",
        "columns, unique=True, sqlite_where=where",
        "columns, unique=False, sqlite_where=where",
        (STORE, "tests/infra/test_migrations.py"),
    ),
    Mutant(
        "an outage under a turn is reported as the application's failure",
        "domain/turn.py",
        "        except StoreUnavailable:\n            # Baton's database failed under the turn",
        "        except KeyboardInterrupt:\n            # Baton's database failed under the turn",
        ("tests/domain/test_driver.py",),
    ),
    Mutant(
        "a claim that did not land reads back no seal",
        "infra/postgres_batch_sql.py",
        "  LEFT JOIN recovery AS r ON r.lookup = q.lookup",
        "  LEFT JOIN recovery AS r ON r.lookup = NULL",
        (BATCH_PARITY,),
    ),
    Mutant(
        "a replay of a session pruned meanwhile records no recovery",
        "infra/postgres_store.py",
        "                await stand_alone(conn, event)",
        "                pass",
        (
            "tests/infra/test_recovery_store.py::"
            "test_a_replay_of_a_session_pruned_meanwhile_still_records_its_recovery",
        ),
    ),
    Mutant(
        "a JSON value is walked without the depth bound (a cycle would hang the replica)",
        "domain/json.py",
        "        if depth > MAX_DEPTH:\n"
        '            return f"nested deeper than {MAX_DEPTH} levels"\n',
        "",
        ("tests/domain/test_json_values.py",),
    ),
    Mutant(
        "a handler's new state is committed unchecked",
        "domain/outcomes.py",
        "    if problem is None and outcome.state is not KEEP:",
        "    if False:",
        ("tests/domain/test_driver.py", "tests/api/test_outputs.py"),
    ),
    Mutant(
        "the projection's JSON stays jsonb on PostgreSQL (numbers renormalised)",
        "migrations/versions/0011_projection_json.py",
        '    _alter(sa.JSON(), "json")',
        "    pass",
        (
            "tests/infra/test_migrations.py::test_0011_gives_back_the_state_a_handler_stored_and_keeps_what_was_there",
        ),
    ),
    Mutant(
        "a batch of side facts links each to the wrong payload",
        "infra/postgres_batch_sql.py",
        '_PAYLOAD_OF_ROW = "(SELECT p.payload FROM input AS p WHERE p.sid = EXCLUDED.session_id)"',
        "_PAYLOAD_OF_ROW = \"'\\\\x00'::bytea\"",
        (BATCH_PARITY,),
    ),
    Mutant(
        "a batch of side facts answers a fact of a pruned session as linked",
        "infra/postgres_batch_sql.py",
        "SELECT i.n, EXISTS (SELECT FROM recorded AS r WHERE r.session_id = i.sid) AS linked",
        "SELECT i.n, true AS linked",
        (BATCH_PARITY,),
    ),
    Mutant(
        "a settled session's stream reads its events after it started",
        "api/sse.py",
        "    if view.settled:",
        "    if False:",
        (
            "tests/api/test_recovery.py::"
            "test_a_settled_sessions_stream_is_503_when_its_events_cannot_be_read",
        ),
    ),
    Mutant(
        "Baton's value types no longer read-only to the type checker",
        "domain/values.py",
        "@dataclass_transform(frozen_default=True, ",
        "@dataclass_transform(frozen_default=False, ",
        ("tests/domain/test_values.py",),
    ),
    Mutant(
        "the supervisor takes a replica stopping for a stop of its own",
        "domain/supervision.py",
        "            if ending is not None and self._withdraw(task) <= outside:\n",
        "            if ending is not None:\n",
        (SUPERVISION,),
    ),
    Mutant(
        "a turn that outlives its first watch is never timed out",
        "domain/supervision.py",
        "        self._keeper = loop.create_task(self._keep_claim())\n"
        "        self._timer = loop.call_at(deadline, self._time_out)\n",
        "        self._keeper = loop.create_task(self._keep_claim())\n",
        (SUPERVISION,),
    ),
    Mutant(
        "a handler that swallows the supervisor's cancel leaves it pending",
        "domain/supervision.py",
        "        self._withdraw(task)\n        return result\n",
        "        return result\n",
        (SUPERVISION,),
    ),
)


def run_mutant(mutant: Mutant) -> tuple[bool, float, str]:
    """(killed, seconds, the last line pytest printed)."""
    path = ROOT / mutant.path
    source = path.read_text()
    found = source.count(mutant.original)
    if found != 1:
        raise SystemExit(
            f"mutant {mutant.name!r} does not apply: its text occurs {found} times in "
            f"{mutant.path}; update tests/mutants.py to the code as it is now"
        )
    began = time.monotonic()
    try:
        path.write_text(source.replace(mutant.original, mutant.mutated))
        done = subprocess.run(
            [*PYTEST, *mutant.tests], cwd=ROOT, capture_output=True, text=True, check=False
        )
    finally:
        path.write_text(source)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode != 0, time.monotonic() - began, lines[-1] if lines else done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-k", dest="only", help="run only mutants whose name contains this")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or args.only.lower() in m.name.lower()]
    rows = []
    for mutant in chosen:
        killed, seconds, last = run_mutant(mutant)
        verdict = "killed" if killed else "SURVIVED"
        print(f"{verdict:<8}  {seconds:5.1f} s  {mutant.name}  ({last})", flush=True)
        rows.append((mutant, killed))
    print("\n| mutant | file | killed by | verdict |\n| --- | --- | --- | --- |")
    for mutant, killed in rows:
        verdict = "killed" if killed else "**survived**"
        print(f"| {mutant.name} | `{mutant.path}` | {', '.join(mutant.tests)} | {verdict} |")
    survivors = sum(1 for _, killed in rows if not killed)
    print(f"\n{len(rows) - survivors} of {len(rows)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
