"""CLAIM, COMMIT and REFUSE of infra/postgres_sql.py for many sessions in one statement.

Each takes one array per parameter that differs between writes (unnest, WITH ORDINALITY
so that every row it returns names the write it answers, `n`, from 1) and the parameters
that do not as scalars. Row for row they do what the one-session statements do; the
conditions, the chain link and the wake-up are the same expressions, so that a batch and
a write alone leave the same rows (tests/infra/test_batch_parity.py). A batch never holds
two writes to one session (infra/batcher.py), so no row is the target of two.
"""

from baton.infra.postgres_sql import (
    EVENTS_CHANNEL,
    HISTORY_COLUMNS,
    LOADED_AND_SEAL,
    SEAL_COLUMNS,
    SEAL_PREFIX,
    linked,
)
from baton.infra.tables import SESSION_FIELDS


def _unnest(columns: tuple[tuple[str, str], ...]) -> str:
    arrays = ", ".join(f"${number}::{kind}[]" for number, (_, kind) in enumerate(columns, 1))
    names = ", ".join(name for name, _ in columns)
    return f"SELECT * FROM unnest({arrays}) WITH ORDINALITY AS i({names}, n)"  # noqa: S608


def _woken(moved: str) -> str:
    return f"""woken AS (
    SELECT pg_notify('{EVENTS_CHANNEL}', f.session_id::text)
      FROM followers AS f JOIN {moved} AS m ON m.session_id = f.session_id
     WHERE f.until > now()
)"""  # noqa: S608 - composed of fixed SQL only


# The arrays of a batched claim: CLAIM's $1-$4 and $8-$11, and the lookup of the seal to
# read back if the claim does not land (see BATCH_CLAIM), in that order.
CLAIM_COLUMNS = (
    ("sid", "uuid"),
    ("presented", "varchar"),
    ("at", "timestamptz"),
    ("data", "json"),
    ("holder", "varchar"),
    ("lease_until", "timestamptz"),
    ("payload", "bytea"),
    ("principal", "varchar"),
    ("lookup", "varchar"),
)
CLAIM_ROW_ARGS = (0, 1, 2, 3, 7, 8, 9, 10, 11)  # where they are in CLAIM's args + lookup
CLAIM_FIXED_ARGS = (4, 5, 6)  # in flight, idle, the event's kind: after the arrays
_C = len(CLAIM_COLUMNS)

# The columns of LOADED_AND_SEAL that a claim that landed leaves NULL (its side chain, the
# seal): the two branches of BATCH_CLAIM's answer line up.
NOT_LOADED = ", ".join(
    ["NULL AS refusals", "NULL AS refusal_head"]
    + [f"NULL AS {SEAL_PREFIX}{column}" for column in SEAL_COLUMNS.split(", ")]
)

# Each claim's answer: its projection row if it landed; if not, the session's row with the
# seal under its lookup, as of the statement's snapshot, for the domain to say why (one
# round trip, not two, for every refusal and replay in a batch). The snapshot is from
# before any wait for a row lock, so a claim that lost a race reads the row as it was
# before the winner: a state that was true, read whole, with the seal of the same moment.
# Anything the domain would change on it runs through the locked skeleton, which reads
# again.
BATCH_CLAIM = f"""
WITH input AS (
    {_unnest(CLAIM_COLUMNS)}
), claimed AS (
    UPDATE sessions AS s
       SET version = s.version + 1, status = ${_C + 1}, claim_turn = s.turn + 1,
           claim_seq = s.version + 1, claim_owner = i.holder, lease_until = i.lease_until,
           updated_at = i.at, cancel_requested = false,
           head_hash = {linked("s.head_hash", "s.version + 1", "s.turn + 1", "i.payload")}
      FROM input AS i
     WHERE s.session_id = i.sid AND s.token_digest = i.presented AND s.status = ${_C + 2}
       AND (s.owner IS NULL OR i.principal IS NULL OR s.owner = i.principal)
 RETURNING {", ".join(f"s.{field}" for field in SESSION_FIELDS)}, i.n, i.data AS claim_data
), appended AS (
    INSERT INTO events (session_id, seq, kind, turn, data, recorded_at, hash)
    SELECT session_id, version, ${_C + 3}, claim_turn, claim_data, updated_at, head_hash
      FROM claimed
), forgotten AS (
    DELETE FROM recovery AS r USING claimed AS c
     WHERE r.session_id = c.session_id AND r.turn > 1
), {_woken("claimed")}
SELECT {", ".join(SESSION_FIELDS)}, {NOT_LOADED}, n, true AS won,
       (SELECT count(*) FROM woken) AS woken
  FROM claimed
UNION ALL
SELECT {LOADED_AND_SEAL}, q.n, false, 0 FROM input AS q
  LEFT JOIN sessions AS s ON s.session_id = q.sid
  LEFT JOIN side_chains AS c ON c.session_id = s.session_id
  LEFT JOIN recovery AS r ON r.lookup = q.lookup
 WHERE NOT EXISTS (SELECT FROM claimed AS m WHERE m.n = q.n)
"""  # noqa: S608 - composed of fixed SQL only

# The arrays of a batched commit: COMMIT's $1-$3, $5-$9 and $11-$18, in that order.
COMMIT_COLUMNS = (
    ("sid", "uuid"),
    ("turn_no", "int"),
    ("claim_at", "int"),
    ("issued", "varchar"),
    ("keep", "bool"),
    ("new_state", "json"),
    ("outcome", "json"),
    ("at", "timestamptz"),
    ("data", "json"),
    ("consumed", "varchar"),
    ("payload", "bytea"),
    ("lookup", "varchar"),
    ("sealed", "varchar"),
    ("key_digest", "varchar"),
    ("fingerprint", "varchar"),
    ("expires_at", "timestamptz"),
)
COMMIT_ROW_ARGS = (0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17)
COMMIT_FIXED_ARGS = (3, 9)  # idle, the event's kind: after the arrays
_M = len(COMMIT_COLUMNS)

BATCH_COMMIT = f"""
WITH input AS (
    {_unnest(COMMIT_COLUMNS)}
), held AS (
    SELECT s.session_id, s.version, s.head_hash, s.state, i.*
      FROM input AS i JOIN sessions AS s
        ON s.session_id = i.sid AND s.claim_turn = i.turn_no AND s.claim_seq = i.claim_at
       AND s.token_digest IS NOT DISTINCT FROM i.consumed
       FOR NO KEY UPDATE OF s
), moved AS (
    UPDATE sessions AS s
       SET version = h.version + 1, turn = h.turn_no, status = ${_M + 1},
           token_digest = h.issued, claim_turn = NULL, claim_seq = NULL, claim_owner = NULL,
           lease_until = NULL, state = CASE WHEN h.keep THEN h.state ELSE h.new_state END,
           last_outcome = h.outcome, updated_at = h.at, cancel_requested = false,
           head_hash = {linked("h.head_hash", "h.version + 1", "h.turn_no", "h.payload")}
      FROM held AS h
     WHERE s.session_id = h.session_id
 RETURNING s.session_id, s.version, s.head_hash, h.n, h.turn_no, h.consumed, h.issued,
           h.data, h.at, h.lookup, h.sealed, h.key_digest, h.fingerprint, h.expires_at
), appended AS (
    INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at, hash)
    SELECT session_id, version, ${_M + 2}, turn_no, consumed, issued, data, at, head_hash
      FROM moved
    RETURNING session_id, seq
), kept AS (
    INSERT INTO recovery (lookup, session_id, turn, sealed, key_digest, fingerprint, expires_at)
    SELECT lookup, session_id, turn_no, sealed, key_digest, fingerprint, expires_at
      FROM moved WHERE lookup IS NOT NULL
    ON CONFLICT (lookup) DO UPDATE
       SET session_id = EXCLUDED.session_id, turn = EXCLUDED.turn, sealed = EXCLUDED.sealed,
           key_digest = EXCLUDED.key_digest, fingerprint = EXCLUDED.fingerprint,
           expires_at = EXCLUDED.expires_at
), {_woken("moved")}
SELECT m.n, a.seq, (SELECT count(*) FROM woken) AS woken
  FROM appended AS a JOIN moved AS m ON m.session_id = a.session_id
"""  # noqa: S608 - composed of fixed SQL only

# The arrays of a batch of facts without a seq (refusals, recoveries) of named sessions:
# REFUSE's $1-$5, and the turn whose events a replay's recovery reads (RECOVER_TURN's $6;
# NULL for any other fact).
SIDE_COLUMNS = (
    ("sid", "uuid"),
    ("kind", "varchar"),
    ("data", "json"),
    ("at", "timestamptz"),
    ("payload", "bytea"),
    ("turn_no", "int"),
)
SIDE_ROW_ARGS = (0, 1, 2, 3, 4, 5)
SIDE_FIXED_ARGS = ()

# REFUSE and RECOVER_TURN for many sessions: each fact linked into its session's side
# chain, or, if the session is not there, not (`linked` false: the caller records it
# standing alone, as one alone does); then a replay's turn events, one row each (NULL
# columns if none). An ON CONFLICT update sees only the table's columns, so each row's
# payload is looked up again by its session, which a batch holds once. Rows are locked in
# the sessions' order, so two batches cannot wait on each other in a circle.
_PAYLOAD_OF_ROW = "(SELECT p.payload FROM input AS p WHERE p.sid = EXCLUDED.session_id)"
_NEXT_SIDE_HEAD = linked("c.refusal_head", "c.refusals + 1", "0", _PAYLOAD_OF_ROW)
BATCH_SIDE = f"""
WITH input AS (
    {_unnest(SIDE_COLUMNS)}
), known AS (
    SELECT session_id FROM sessions WHERE session_id = ANY($1::uuid[])
     ORDER BY session_id FOR KEY SHARE
), counted AS (
    INSERT INTO side_chains AS c (session_id, refusals, refusal_head)
    SELECT i.sid, 1, {linked("NULL", "1", "0", "i.payload")}
      FROM input AS i JOIN known AS k ON k.session_id = i.sid
     ORDER BY i.sid
    ON CONFLICT (session_id) DO UPDATE
       SET refusals = c.refusals + 1,
           refusal_head = {_NEXT_SIDE_HEAD}
    RETURNING session_id, refusals, refusal_head
), recorded AS (
    INSERT INTO events (session_id, refusal_seq, kind, data, recorded_at, hash)
    SELECT c.session_id, c.refusals, i.kind, i.data, i.at, c.refusal_head
      FROM counted AS c JOIN input AS i ON i.sid = c.session_id
    RETURNING session_id
)
SELECT i.n, EXISTS (SELECT FROM recorded AS r WHERE r.session_id = i.sid) AS linked, h.*
  FROM input AS i
  LEFT JOIN LATERAL (SELECT {HISTORY_COLUMNS} FROM events
                      WHERE session_id = i.sid AND seq > 0 AND turn = i.turn_no) AS h ON true
"""  # noqa: S608 - composed of fixed SQL only
