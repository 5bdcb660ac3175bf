"""The SQL of the PostgreSQL store (infra/postgres_store.py): one statement per write.

Each statement is conditional and appends its event through a data-modifying CTE, linking it
into the session's hash chain with sha256() (the link is defined in infra/chain.py).
"""

from baton.infra.tables import (
    EVENT_FIELDS,
    LOAD_SESSION,
    LOADED_COLUMNS,
    SESSION_FIELDS,
    UPDATED_FIELDS,
)

SESSION_COLUMNS = ", ".join(SESSION_FIELDS)


def _placeholders(count: int, first: int = 1) -> str:
    return ", ".join(f"${number}" for number in range(first, first + count))


SELECT_SESSION = LOAD_SESSION + "$1"
# Locks the projection row only: the side chain's row stays free for refusals meanwhile.
# NO KEY UPDATE, the lock an UPDATE of the row takes anyway: it leaves the row to a
# refusal's KEY SHARE (REFUSE), which only an operator's FOR UPDATE (prune, replay) holds up.
LOCK_SESSION = SELECT_SESSION + " FOR NO KEY UPDATE OF s"
INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_FIELDS)}) "  # noqa: S608 - fixed column names
    f"VALUES ({_placeholders(len(EVENT_FIELDS))})"
)
INSERT_SESSION = (
    f"INSERT INTO sessions ({SESSION_COLUMNS}) "  # noqa: S608 - fixed column names
    f"VALUES ({_placeholders(len(SESSION_FIELDS))})"
)
# $1 is the session, then UPDATED_FIELDS in order, then the version the row must be at.
UPDATE_SESSION = (
    "UPDATE sessions SET "  # noqa: S608 - fixed column names
    + ", ".join(f"{field} = ${number}" for number, field in enumerate(UPDATED_FIELDS, start=2))
    + f" WHERE session_id = $1 AND version = ${len(UPDATED_FIELDS) + 2}"
)


def linked(previous: str, seq: str, turn: str, payload: str) -> str:
    """infra.chain.link, in SQL: previous hash, seq and turn as 8-byte integers, payload."""
    return (
        f"encode(sha256(coalesce(decode({previous}, 'hex'), decode(repeat('00', 32), 'hex'))"
        f" || int8send(({seq})::bigint) || int8send(({turn})::bigint) || {payload}), 'hex')"
    )


# A new session row and its `started` event, both planned in Python, in one statement:
# the session's values ($1...), then the event's.
START = f"""
WITH session AS (
    INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({_placeholders(len(SESSION_FIELDS))})
)
INSERT INTO events ({", ".join(EVENT_FIELDS)})
VALUES ({_placeholders(len(EVENT_FIELDS), len(SESSION_FIELDS) + 1)})
"""  # noqa: S608 - composed of fixed SQL only

# Wake the followers of a session, if it has any (PostgreSQL delivers at commit). Every
# statement below that appends a session's events ends by evaluating this, so the wake-up
# costs one index probe of the (nearly always empty) followers table.
EVENTS_CHANNEL = "baton_events"
CANCEL_CHANNEL = "baton_cancel"
WAKE = f"""woken AS (
    SELECT pg_notify('{EVENTS_CHANNEL}', session_id::text) FROM followers
     WHERE session_id = $1 AND until > now()
)"""  # noqa: S608 - composed of fixed SQL only

SEAL_COLUMNS = "lookup, session_id, turn, sealed, key_digest, fingerprint, expires_at"
# A loaded session's columns (LOADED_COLUMNS), then the seal's, each as seal_<column>.
SEAL_PREFIX = "seal_"
LOADED_AND_SEAL = f"{LOADED_COLUMNS}, " + ", ".join(
    f"r.{column} AS {SEAL_PREFIX}{column}" for column in SEAL_COLUMNS.split(", ")
)

# Validate and claim in one step: only a session whose current token was presented, that no
# turn holds and that the principal ($11) may see (domain/principals.py) moves; the event
# lands at the version the update gave it; the seal of the last turn, whose token this
# claim spends, is forgotten (domain.recovery.Forget). The answer is the claimed row, or
# no row. (BATCH_CLAIM, infra/postgres_batch_sql.py, reads back what a claim that did not
# land found. A claim alone does not: that second branch costs PostgreSQL about 50 us of
# CPU per claim and commit, 540 -> 590 us over five alternating rounds on one connection,
# even when the claim lands, which nearly every claim does; one refused now and then pays
# a read of its own instead.)
CLAIM = f"""
WITH claimed AS (
    UPDATE sessions
       SET version = version + 1, status = $5, claim_turn = turn + 1,
           claim_seq = version + 1, claim_owner = $8, lease_until = $9, updated_at = $3,
           cancel_requested = false,
           head_hash = {linked("head_hash", "version + 1", "turn + 1", "$10")}
     WHERE session_id = $1 AND token_digest = $2 AND status = $6
       AND (owner IS NULL OR $11::varchar IS NULL OR owner = $11::varchar)
 RETURNING {SESSION_COLUMNS}
), appended AS (
    INSERT INTO events (session_id, seq, kind, turn, data, recorded_at, hash)
    SELECT session_id, version, $7, claim_turn, $4, $3, head_hash FROM claimed
), forgotten AS (
    DELETE FROM recovery AS r USING claimed AS c
     WHERE r.session_id = c.session_id AND r.turn > 1
), {WAKE}
SELECT *, (SELECT count(*) FROM woken) AS woken FROM claimed
"""  # noqa: S608

# A claim holder's own event (a record, a renewal), only while this turn holds the claim.
HOLDER_EVENT = f"""
WITH moved AS (
    UPDATE sessions
       SET version = version + 1, updated_at = $4,
           claim_owner = coalesce($7, claim_owner), lease_until = coalesce($8, lease_until),
           head_hash = {linked("head_hash", "version + 1", "$2", "$9")}
     WHERE session_id = $1 AND claim_turn = $2 AND claim_seq = $3
 RETURNING session_id, version, head_hash
), appended AS (
    INSERT INTO events (session_id, seq, kind, turn, data, recorded_at, hash)
    SELECT session_id, version, $5, $2, $6, $4, head_hash FROM moved
    RETURNING seq
), {WAKE}
SELECT seq, (SELECT count(*) FROM woken) AS woken FROM appended
"""  # noqa: S608 - composed of fixed SQL only

# Consume the current token and issue the next, only while this turn holds the claim and the
# token it consumes is the one the claim was made with; keep the issued token sealed for
# recovery ($14..$19, a recovery row; NULL lookup: no seal), replacing one of its lookup.
COMMIT = f"""
WITH held AS (
    SELECT session_id, version, head_hash, state FROM sessions
     WHERE session_id = $1 AND claim_turn = $2 AND claim_seq = $3
       AND token_digest IS NOT DISTINCT FROM $12
       FOR NO KEY UPDATE
), moved AS (
    UPDATE sessions AS s
       SET version = held.version + 1, turn = $2, status = $4, token_digest = $5,
           claim_turn = NULL, claim_seq = NULL, claim_owner = NULL, lease_until = NULL,
           state = CASE WHEN $6 THEN held.state ELSE $7 END,
           last_outcome = $8, updated_at = $9, cancel_requested = false,
           head_hash = {linked("held.head_hash", "held.version + 1", "$2", "$13")}
      FROM held
     WHERE s.session_id = held.session_id
 RETURNING s.session_id, s.version, s.head_hash
), appended AS (
    INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at, hash)
    SELECT session_id, version, $10, $2, $12, $5, $11, $9, head_hash FROM moved
    RETURNING seq
), kept AS (
    INSERT INTO recovery (lookup, session_id, turn, sealed, key_digest, fingerprint, expires_at)
    SELECT $14::varchar, session_id, $2, $15::varchar, $16::varchar, $17::varchar,
           $18::timestamptz
      FROM moved WHERE $14::varchar IS NOT NULL
    ON CONFLICT (lookup) DO UPDATE
       SET session_id = EXCLUDED.session_id, turn = EXCLUDED.turn, sealed = EXCLUDED.sealed,
           key_digest = EXCLUDED.key_digest, fingerprint = EXCLUDED.fingerprint,
           expires_at = EXCLUDED.expires_at
), {WAKE}
SELECT seq, (SELECT count(*) FROM woken) AS woken FROM appended
"""  # noqa: S608 - composed of fixed SQL only

# A fact without a seq (a refusal, a recovery) of a known session, linked into its side
# chain, whose heads are a row of their own: the session's projection row is read, never
# updated nor locked, so a flood of refusals does not hold up its owner's turns. The side
# chain's row lines the facts up, however many arrive at once. KEY SHARE conflicts with no
# turn's lock, only with an operator's FOR UPDATE: a session being pruned (or replayed) is
# waited for, and one pruned meanwhile is not there when the wait ends, so the fact stands
# alone (infra/planning.py) instead of starting a side chain of a session that is gone.
_SIDE_FACT = f"""known AS (
    SELECT session_id FROM sessions WHERE session_id = $1 FOR KEY SHARE
), counted AS (
    INSERT INTO side_chains AS c (session_id, refusals, refusal_head)
    SELECT session_id, 1, {linked("NULL", "1", "0", "$5")} FROM known
    ON CONFLICT (session_id) DO UPDATE
       SET refusals = c.refusals + 1,
           refusal_head = {linked("c.refusal_head", "c.refusals + 1", "0", "$5")}
    RETURNING session_id, refusals, refusal_head
), recorded AS (
    INSERT INTO events (session_id, refusal_seq, kind, data, recorded_at, hash)
    SELECT session_id, refusals, $2, $3, $4, refusal_head FROM counted
    RETURNING refusal_seq
)"""  # noqa: S608 - composed of fixed SQL only
REFUSE = f"WITH {_SIDE_FACT} SELECT refusal_seq FROM recorded"  # noqa: S608

LOCK_LOOKUP = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
SELECT_SEAL = f"SELECT {SEAL_COLUMNS} FROM recovery WHERE lookup = $1"  # noqa: S608
# A session's row with its side chain's heads ($1), and the seal under a lookup ($2), in one
# statement: one round trip instead of two, and one snapshot, so a commit landing meanwhile
# shows in both or in neither.
SELECT_SESSION_AND_SEAL = (
    f"SELECT {LOADED_AND_SEAL} FROM (SELECT 1) AS one "  # noqa: S608
    "LEFT JOIN sessions AS s ON s.session_id = $1 "
    "LEFT JOIN side_chains AS c ON c.session_id = s.session_id "
    "LEFT JOIN recovery AS r ON r.lookup = $2"
)
KEEP_SEAL = f"""
INSERT INTO recovery ({SEAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (lookup) DO UPDATE
   SET session_id = EXCLUDED.session_id, turn = EXCLUDED.turn, sealed = EXCLUDED.sealed,
       key_digest = EXCLUDED.key_digest, fingerprint = EXCLUDED.fingerprint,
       expires_at = EXCLUDED.expires_at
"""  # noqa: S608 - composed of fixed SQL only
FORGET_NEXT_TOKENS = "DELETE FROM recovery WHERE session_id = $1 AND turn > 1"
FORGET_ALL = "DELETE FROM recovery WHERE session_id = $1"
WAKE_FOLLOWERS = f"WITH {WAKE} SELECT count(*) FROM woken"  # noqa: S608
NOTIFY_CANCEL = f"SELECT pg_notify('{CANCEL_CHANNEL}', $1::text)"
HISTORY_COLUMNS = (
    "position, session_id, seq, refusal_seq, kind, turn, consumed, issued, data, recorded_at, hash"
)
HISTORY = (
    f"SELECT {HISTORY_COLUMNS} FROM events WHERE session_id = $1 AND seq > $2 "  # noqa: S608
    "AND ($3::int IS NULL OR turn = $3) ORDER BY seq"
)
# A replay's recovery, recorded as REFUSE records a fact ($1-$5), and the events of the turn
# it replays ($6), read in the same statement: one round trip for what was two. Every row
# says whether the fact was linked into the session's side chain; the events, if any, come
# as the rest of the row (in no particular order), NULL if there are none. `seq > 0`, not
# `seq IS NOT NULL`: the planner then reads the session's events by (session_id, seq), and
# never walks its side facts (a session retried 10,000 times has 10,000 of them).
RECOVER_TURN = f"""
WITH {_SIDE_FACT}
SELECT (SELECT count(*) FROM recorded) AS linked, h.* FROM (SELECT 1) AS one
  LEFT JOIN (SELECT {HISTORY_COLUMNS} FROM events
              WHERE session_id = $1 AND seq > 0 AND turn = $6) AS h ON true
"""  # noqa: S608 - composed of fixed SQL only
FOLLOW = (
    "INSERT INTO followers (session_id, until) VALUES ($1, $2) "
    "ON CONFLICT (session_id) DO UPDATE SET until = greatest(followers.until, EXCLUDED.until)"
)
SWEEP = (
    "DELETE FROM recovery WHERE expires_at <= $1",
    "DELETE FROM followers WHERE until <= $1",
    "DELETE FROM refusal_budgets WHERE window_end <= $1",
)
# One more refusal for a client ($1): counted in its window, or the first of a new window
# ending at $2 if the last one ended by now ($3). One statement, so replicas never race.
SPEND_REFUSAL = """
INSERT INTO refusal_budgets AS b (client, refused, window_end) VALUES ($1, 1, $2)
ON CONFLICT (client) DO UPDATE
   SET refused = CASE WHEN b.window_end <= $3 THEN 1 ELSE b.refused + 1 END,
       window_end = CASE WHEN b.window_end <= $3 THEN $2 ELSE b.window_end END
RETURNING refused, window_end
"""
