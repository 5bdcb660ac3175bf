-- sql-floor-pg: the raw SQL of one Baton turn, as pgbench runs it (one script run = one turn).
--
-- Two transactions, the shape of infra/store.py's claim and commit: lock the session's row,
-- append the event, write the projection guarded by the version just read. Revise this file
-- when the store's statements change, so the floor keeps mirroring them.
--
-- Each pgbench client owns the session seeded for its :client_id (bench/baselines/
-- sql_floor_pg.py makes the ids). Each commit consumes the current digest and issues a new,
-- unique one, so events.consumed, events.issued and (session_id, seq) all see realistic keys.

-- the claim: validate (read the current token, version and turn) and mark in flight
BEGIN;
SELECT session_id AS sid, version AS v, turn AS t, token_digest AS current_digest
  FROM sessions
 WHERE session_id = ('00000000-0000-7000-8000-' || lpad(:client_id::text, 12, '0'))::uuid
   FOR UPDATE \gset
INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at)
VALUES (:sid, :v + 1, 'claimed', :t + 1, NULL, NULL, '{"input": {"message": "x"}}', now());
UPDATE sessions
   SET version = :v + 1, turn = :t, status = 'in-flight', token_digest = :current_digest,
       claim_turn = :t + 1, claim_seq = :v + 1, state = state, last_outcome = last_outcome,
       created_at = created_at, updated_at = now()
 WHERE session_id = :sid AND version = :v;
COMMIT;

-- the commit: consume the current token, issue the next, store the outcome, go idle
BEGIN;
SELECT session_id AS sid, version AS v, turn AS t, token_digest AS current_digest,
       md5(random()::text) || md5(random()::text) AS next_digest
  FROM sessions
 WHERE session_id = ('00000000-0000-7000-8000-' || lpad(:client_id::text, 12, '0'))::uuid
   FOR UPDATE \gset
INSERT INTO events (session_id, seq, kind, turn, consumed, issued, data, recorded_at)
VALUES (:sid, :v + 1, 'committed', :t + 1, :current_digest, :next_digest,
        '{"status": "finished", "output": {"turn": 2}, "sealedToken": "P0Qh1qXn4S7k2mD9vLw8eYb3TzR6cUoJfHaNgKxEpVs"}',
        now());
UPDATE sessions
   SET version = :v + 1, turn = :t + 1, status = 'idle', token_digest = :next_digest,
       claim_turn = NULL, claim_seq = NULL, state = state,
       last_outcome = '{"status": "finished", "output": {"turn": 2}, "turn": 2}',
       created_at = created_at, updated_at = now()
 WHERE session_id = :sid AND version = :v;
COMMIT;
