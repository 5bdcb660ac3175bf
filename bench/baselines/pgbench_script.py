"""The sql-floor-pg script, generated at run time from the PostgreSQL store's own statements.

A turn on PostgreSQL is two statements (infra/postgres_store.py): `infra.postgres_sql.CLAIM`
and then `infra.postgres_sql.COMMIT`, each one round trip. The floor sends exactly those two
strings, with each `$n` replaced by a pgbench variable bound to the kind of value the store
binds there (the maps below, in the order of PostgresSessionStore._claim_at_once and
.commit). Generated rather than written by hand so the floor follows any edit of the
store's SQL; a `$n` without a variable, a variable without a `$n`, or a `:name` that
nothing defines stops the run here instead of measuring something else.

What differs from the store, and why it does not change the work the server does:
- pgbench sends every parameter as text with no type, and the server infers the types from
  the statement, as it does for asyncpg (which prepares without types too). So no casts are
  needed; the values are the text forms of what asyncpg sends in binary (the chain payload
  as bytea's `\\x` hex form, times in ISO 8601).
- pgbench turns each *occurrence* of a variable into a parameter of its own, so a `$n` the
  statement uses twice is bound twice; the plan and the work are the same.
- pgbench cannot compute strings, so the per-turn values come from the database: the CLAIM's
  RETURNING row (captured with `\\gset`) gives the commit its claim turn and seq, the digest
  it consumes, and a fresh 64-hex digest to issue (the claim's chain link, a SHA-256 no event
  has issued before). That digest is what the next turn's claim presents.
- Values that vary per turn in Baton but only in content (times, the JSON data, the chain
  payload) are constants here of the same size: the server's work does not depend on them.
  The store sends SQL NULL as the new state of a turn that keeps it (the bench handler
  does); pgbench cannot send a NULL, so it sends JSON `null`, which the CASE discards alike.
"""

import os
import re
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from baton.domain.events import EventKind, Lease, TurnClaimed, TurnCommitted
from baton.domain.identifiers import (
    SessionId,
    digest_token,
    mint_token,
    new_session_id,
    seal_token,
)
from baton.domain.outcomes import KEEP, Finished
from baton.domain.state import SessionStatus, outcome_summary
from baton.infra import postgres_sql
from baton.infra.chain import row_payload
from baton.infra.codec import event_to_row
from baton.infra.settings import Settings
from baton.infra.tables import SESSION_FIELDS

# What the claim's RETURNING row is captured as: `claimed_version`, `claimed_head_hash`...
CLAIMED = "claimed_"
COMMITTED = "committed_"  # and the commit's (its seq)
# Set once per pgbench client (see INIT): its session, and the digest its first claim presents.
SESSION_ID = "session_id"
PRESENTED = f"{CLAIMED}head_hash"  # the digest the last commit issued (see the docstring)
HAVE_SESSION = "have_session"

# $n of infra.postgres_sql.CLAIM -> the variable bound to it (PostgresSessionStore._claim_at_once).
CLAIM_VARIABLES: Mapping[int, str] = {
    1: SESSION_ID,
    2: PRESENTED,  # the presented token's digest
    3: "at",
    4: "claim_data",  # the claimed event's data (json)
    5: "in_flight",
    6: "idle",
    7: "claimed_kind",
    8: "lease_owner",
    9: "lease_until",
    10: "claim_payload",  # the chain payload (bytea)
    # The requesting principal. pgbench has no NULL variable: the floor binds a name, which
    # costs the same as NULL here because the seeded sessions have no owner.
    11: "principal",
}
# $n of infra.postgres_sql.COMMIT -> the variable bound to it (PostgresSessionStore.commit).
COMMIT_VARIABLES: Mapping[int, str] = {
    1: SESSION_ID,
    2: f"{CLAIMED}claim_turn",
    3: f"{CLAIMED}claim_seq",
    4: "idle",
    5: f"{CLAIMED}head_hash",  # the issued digest: fresh, 64 hex
    6: "keep",  # the handler kept the session's state
    7: "new_state",
    8: "last_outcome",
    9: "at",
    10: "committed_kind",
    11: "commit_data",  # the committed event's data (json)
    12: f"{CLAIMED}token_digest",  # the consumed digest: the one the claim presented
    13: "commit_payload",  # the chain payload (bytea)
    # The recovery row (domain.recovery.Seal): found by the consumed digest.
    14: f"{CLAIMED}token_digest",
    15: "sealed",
    # pgbench has no NULL variable: the floor binds the digests a keyed turn would (the
    # store binds NULL for an unkeyed one), the same width as the seal's other values.
    16: "seal_key",
    17: "seal_fingerprint",
    18: "seal_until",
}

# Once per client (and per pgbench run): find its session, one of those seeded, by its
# client number. One round trip more in the client's first turn, out of thousands.
INIT = f"""\\if :{HAVE_SESSION} = 0
SELECT session_id AS {SESSION_ID}, token_digest AS {PRESENTED}, 1 AS {HAVE_SESSION}
  FROM sessions ORDER BY session_id OFFSET :client_id LIMIT 1
\\gset
\\endif"""

HEADER = """\
-- sql-floor-pg: one Baton turn on PostgreSQL as the store sends it, generated at run time
-- by bench/baselines/pgbench_script.py from infra/postgres_sql.py (CLAIM, then COMMIT).
-- Not to be edited: the constants are bound with --define."""

_PARAMETER = re.compile(r"\$(\d+)")
# A pgbench variable reference: a colon and a name, but not a `::` cast.
_VARIABLE = re.compile(r"(?<!:):([A-Za-z0-9_]+)")
_PGBENCH_VARIABLES = frozenset({"client_id", "random_seed", "scale"})  # pgbench's own
TYPICAL_TURN = 1000  # a session's turn number during a run is in the thousands: its width
LEASE_SECONDS = 30.0  # domain.driver.TurnServices.lease_seconds


class ScriptError(ValueError):
    """The store's SQL cannot be rewritten for pgbench as the maps say."""


@dataclass(frozen=True, slots=True)
class PgbenchScript:
    text: str
    defines: dict[str, str]  # the constants, for `--define name=value`

    def define_args(self) -> list[str]:
        return [f"--define={name}={value}" for name, value in sorted(self.defines.items())]


def rewrite(statement: str, variables: Mapping[int, str]) -> str:
    """The statement with each `$n` replaced by `:variable`; every `$n` and every variable
    must be accounted for, and pgbench splits commands at semicolons."""
    used: set[int] = set()

    def substitute(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number not in variables:
            raise ScriptError(f"${number} has no pgbench variable")
        used.add(number)
        return f":{variables[number]}"

    rewritten = _PARAMETER.sub(substitute, statement.strip())
    if unused := sorted(set(variables) - used):
        raise ScriptError(f"variables for parameters the statement no longer has: {unused}")
    if ";" in rewritten:
        raise ScriptError("a semicolon would end the pgbench command early")
    return rewritten


def _json(value: object) -> str:
    """JSON as the store's asyncpg codec encodes it (msgspec, compact)."""
    return msgspec.json.encode(value).decode()


def _bytea(payload: bytes) -> str:
    return "\\x" + payload.hex()


def _sample_digest() -> str:
    return digest_token(mint_token(secrets.token_bytes))


def _claim_constants(at: datetime, session_id: SessionId) -> dict[str, str]:
    """A claim with the load generator's input and the server's lease: the shape of
    api/app.py's owner (host, pid, 3 random bytes) and the default lease length."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    lease = Lease(owner, at + timedelta(seconds=LEASE_SECONDS))
    draft = TurnClaimed(
        session_id=session_id, seq=0, turn=0, input={"message": "x"}, lease=lease, at=at
    )
    row = event_to_row(draft)
    return {
        "claim_data": _json(row["data"]),
        "in_flight": SessionStatus.IN_FLIGHT.value,
        "claimed_kind": EventKind.CLAIMED.value,
        "lease_owner": lease.owner,
        "lease_until": lease.until.isoformat(),
        "claim_payload": _bytea(row_payload(row)),
    }


def _commit_constants(at: datetime, session_id: SessionId) -> dict[str, str]:
    """The bench handler's outcome (it keeps the session's state), with a sealed token."""
    outcome = Finished({"turn": TYPICAL_TURN})
    draft = TurnCommitted(
        session_id=session_id,
        seq=0,
        turn=TYPICAL_TURN,
        consumed=_sample_digest(),
        issued=_sample_digest(),
        outcome=outcome,
        at=at,
    )
    row = event_to_row(draft)
    keep = outcome.state is KEEP
    return {
        "keep": "true" if keep else "false",
        "new_state": "null" if keep else _json(outcome.state),
        "last_outcome": _json(outcome_summary(draft)),
        "committed_kind": EventKind.COMMITTED.value,
        "commit_data": _json(row["data"]),
        "commit_payload": _bytea(row_payload(row)),
        "sealed": seal_token(mint_token(secrets.token_bytes), mint_token(secrets.token_bytes)),
        "seal_key": _sample_digest(),
        "seal_fingerprint": _sample_digest(),
        "seal_until": (at + timedelta(seconds=Settings().recovery_window)).isoformat(),
    }


def constants(at: datetime) -> dict[str, str]:
    """The values of one representative turn, built by the code that builds the store's."""
    session_id = new_session_id(int(at.timestamp() * 1000), secrets.token_bytes)
    common = {
        HAVE_SESSION: "0",
        "at": at.isoformat(),
        "idle": SessionStatus.IDLE.value,
        "principal": "bench",
    }
    return common | _claim_constants(at, session_id) | _commit_constants(at, session_id)


def _defined_by_script() -> set[str]:
    """The variables the script's own `\\gset`s set."""
    claimed = {f"{CLAIMED}{field}" for field in SESSION_FIELDS}
    return {SESSION_ID, PRESENTED, HAVE_SESSION, f"{COMMITTED}seq"} | claimed


def check_variables(text: str, defines: Mapping[str, str]) -> None:
    """Every `:name` in the script is defined, and no `$n` is left: pgbench would otherwise
    fail mid-run (or, for a `$n`, send a statement the store does not)."""
    if leftover := _PARAMETER.search(text):
        raise ScriptError(f"{leftover.group(0)} left in the script")
    known = _defined_by_script() | _PGBENCH_VARIABLES | set(defines)
    if unknown := sorted(set(_VARIABLE.findall(text)) - known):
        raise ScriptError(f"variables nothing defines: {unknown}")


def build(
    claim: str = postgres_sql.CLAIM,
    commit: str = postgres_sql.COMMIT,
    at: datetime | None = None,
) -> PgbenchScript:
    """The script of one turn: find the session (first turn only), claim, commit. Both
    statements must return one row (`\\gset` fails the client otherwise), so a claim or a
    commit that does not apply stops the run rather than passing for a fast turn."""
    defines = constants(at or datetime.now(UTC))
    claim_command = f"-- CLAIM\n{rewrite(claim, CLAIM_VARIABLES)}\n\\gset {CLAIMED}"
    commit_command = f"-- COMMIT\n{rewrite(commit, COMMIT_VARIABLES)}\n\\gset {COMMITTED}"
    text = "\n\n".join([HEADER, INIT, claim_command, commit_command])
    check_variables(text, defines)
    return PgbenchScript(text + "\n", defines)
