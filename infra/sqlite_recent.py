"""The sessions the SQLite writer wrote last, kept as it wrote them, so that the next
transaction on one of them needs neither its SELECT nor the parsing of its row.

A buffered turn is two transactions on one session (claim, then commit), and each began by
reading back the row the one before had just written: a SELECT and then text turned into
times, JSON and a SessionState, about 20 µs twice a turn. The writer knows that row already;
what it must also know is that nothing else has changed it since:
- Another connection (another process's writer; this process's SQLAlchemy engine, which
  retention, imports and operators' commands write through) commits to the file: the
  writer reads `PRAGMA data_version` right after BEGIN IMMEDIATE, holding the write lock, so
  nobody can commit between that check and the group's statements. Any change: forget all.
- This writer's own transactions: one that writes a session leaves it here as written (its
  projection row and its chain heads), or drops it (the transaction failed and its writes
  were rolled back). Writing a side chain's heads (a refusal, a recovery) drops the session.
- A group whose BEGIN or COMMIT fails takes back every transaction in it: forget all.
These rules are the whole of its correctness: a write built on a stale entry would still
fail (on the UPDATE's `WHERE version = ?` or an event's unique seq) and be retried on a
fresh read, but a refusal or a read decided on one would not be caught. So every statement
of this writer that changes `sessions` goes through the store's `_write`, which keeps or
drops, and every one that changes `side_chains` through its `_insert_side`, which drops
(tests/infra/test_sqlite_recent.py).

JSON (the handler's state, the last outcome) is kept as the text that was written and is
decoded on every hit, as a SELECT would have: the objects handed out are new each time, so
a handler that mutates the state it was given changes nothing kept here.
"""

import sqlite3
from dataclasses import fields
from typing import Any

from baton.domain.state import SessionState
from baton.domain.values import value
from baton.infra.chain import ChainHeads
from baton.infra.planning import Loaded, WritePlan
from baton.infra.sqlite_values import db_id, json_value

CAPACITY = 4096  # sessions kept; the oldest written goes first (a few hundred bytes each)
_STATE_FIELDS = tuple(field.name for field in fields(SessionState))
_KEPT_FIELDS = tuple(name for name in _STATE_FIELDS if name not in {"state", "last_outcome"})


@value
class _Written:
    kept: dict[str, Any]  # the state's fields but its two JSON ones: none of them mutable
    state_text: str
    outcome_text: str
    heads: ChainHeads


class OutsideCommits:
    """Whether another connection committed to the database file since the last look.

    `PRAGMA data_version` moves when any other connection commits, never for this one's own
    commits; read while holding the write lock, nobody can commit between the look and the
    statements that follow it."""

    def __init__(self) -> None:
        self._version: int | None = None

    def committed(self, conn: sqlite3.Connection) -> bool:
        version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        moved = version != self._version
        self._version = version
        return moved


class RecentSessions:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._written: dict[str, _Written] = {}  # by the session's id as the table has it
        self._outside = OutsideCommits()

    def __len__(self) -> int:
        return len(self._written)

    def began(self, conn: sqlite3.Connection) -> None:
        """Called right after BEGIN IMMEDIATE: forget all if another connection committed."""
        if self._outside.committed(conn):
            self._written.clear()

    def forget_all(self) -> None:
        self._written.clear()

    def drop(self, key: str) -> None:
        self._written.pop(key, None)

    def get(self, key: str) -> tuple[SessionState, ChainHeads] | None:
        written = self._written.get(key)
        if written is None:
            return None
        state = SessionState(
            **written.kept,
            state=json_value(written.state_text),
            last_outcome=json_value(written.outcome_text),
        )
        return state, written.heads

    def keep(
        self,
        key: str,
        state: SessionState,
        heads: ChainHeads,
        *,
        state_text: str,
        outcome_text: str,
    ) -> None:
        """`state` and `heads` as just written, its JSON fields as the texts written."""
        kept = {name: getattr(state, name) for name in _KEPT_FIELDS}
        self._written.pop(key, None)  # re-inserted last: eviction goes by age of the write
        self._written[key] = _Written(kept, state_text, outcome_text, heads)
        if len(self._written) > self._capacity:
            del self._written[next(iter(self._written))]

    def remember(
        self,
        loaded: Loaded,
        after: SessionState | None,
        planned: WritePlan,
        written: dict[str, Any] | None,
    ) -> None:
        """After a transaction wrote `planned` (its projection row as `written`, if any):
        keep the session as it left it, or drop whatever it may have outdated."""
        if planned.side is not None:
            # The side chain's session was dropped where its heads were written (the store's
            # _insert_side); the kept heads would not have its new ones, so nothing is kept.
            if after is not None:
                self.drop(db_id(after.session_id))
            return
        if after is None or written is None:
            return
        # As infra/planning.plan links them: onto the loaded chains, or new ones for a
        # session the transaction started.
        same = loaded.state is not None and loaded.state.session_id == after.session_id
        base = loaded.heads if same else ChainHeads()
        heads = ChainHeads(written["head_hash"], base.refusals, base.refusal_head)
        self.keep(
            written["session_id"],
            after,
            heads,
            state_text=written["state"],
            outcome_text=written["last_outcome"],
        )
