"""The schema: one append-only event table and its `sessions` projection (PROTOCOL section 7).

These tables are the single source for the migrations; a test proves the two agree.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    select,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite's DATETIME has no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Native uuid on PostgreSQL (16 bytes per key); canonical text in and out everywhere.
SessionIdType = Uuid(as_uuid=False)
DIGEST_LENGTH = 64  # SHA-256, hex
PRINCIPAL_LENGTH = 200  # "jwt:" and a subject (api/auth.py caps it), or "key:" and a name

events = Table(
    "events",
    metadata,
    # SQLite only auto-numbers an INTEGER PRIMARY KEY (the rowid), not a BIGINT one.
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("session_id", SessionIdType, nullable=True),  # NULL: a refusal naming no session
    Column("seq", Integer, nullable=True),  # NULL for refusals: they move no version
    # A refusal's place in its session's refusal chain (NULL for session events and for
    # refusals that name no session).
    Column("refusal_seq", Integer, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("turn", Integer, nullable=True),
    Column("consumed", String(DIGEST_LENGTH), nullable=True),
    Column("issued", String(DIGEST_LENGTH), nullable=True),
    # `json`, not `jsonb`, on PostgreSQL: the text stays as written, so a hash over the
    # event can be derived from it again exactly.
    Column("data", JSON(), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("hash", String(DIGEST_LENGTH), nullable=True),  # the chain link (infra/chain.py)
    # PostgreSQL: the inserting transaction (a server default migration 0003 sets there),
    # for a global feed that never skips a row that commits late (infra/history.py). SQLite
    # commits in position order, so it stays NULL there.
    Column("txid", BigInteger, nullable=True),
    # The optimistic-concurrency lock: two events at one version cannot both land.
    UniqueConstraint("session_id", "seq"),
    # A session's full history, refusals included, in global order.
    Index(None, "session_id", "position"),
    # SQLite would otherwise reuse the positions of pruned rows (migration 0004).
    sqlite_autoincrement=True,
)


def _where(condition: Any) -> dict[str, Any]:
    """An index's predicate, the same on both backends."""
    return {"sqlite_where": condition, "postgresql_where": condition}


# Partial indexes (migration 0010): most events consume, issue or place nothing, and both
# backends index NULLs too: an entry written on every append that no rule or lookup uses.
# Uniqueness is unchanged (NULLs never collided), and a lookup by these columns (`= x`,
# `IN (...)`) implies NOT NULL, so it can still use them.
#
# A token is consumed once, ever, and issued once, whatever the code above this table
# believes; and a refusal has one place in its session's side chain.
Index(
    "uq_events_consumed", events.c.consumed, unique=True, **_where(events.c.consumed.is_not(None))
)
Index("uq_events_issued", events.c.issued, unique=True, **_where(events.c.issued.is_not(None)))
Index(
    "uq_events_session_id_refusal_seq",
    events.c.session_id,
    events.c.refusal_seq,
    unique=True,
    **_where(events.c.refusal_seq.is_not(None)),
)
# The global feed's order on PostgreSQL, where every row has a txid; SQLite leaves it NULL
# (it commits in position order), so there the index stays empty.
Index(
    "ix_events_txid_position",
    events.c.txid,
    events.c.position,
    sqlite_where=events.c.txid.is_not(None),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", SessionIdType, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("turn", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("token_digest", String(DIGEST_LENGTH), nullable=True),
    Column("claim_turn", Integer, nullable=True),
    Column("claim_seq", Integer, nullable=True),
    Column("claim_owner", String(100), nullable=True),  # the process holding the claim
    Column("lease_until", UtcDateTime(), nullable=True),  # the claim lapses then, unrenewed
    # `json`, not `jsonb`, on PostgreSQL (migration 0011): jsonb renormalises numbers (a
    # float 1e20 would come back an integer), and a handler gets back what it stored.
    Column("state", JSON(), nullable=True),
    Column("last_outcome", JSON(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # The heads of the session's two hash chains, and how many refusals it has seen.
    Column("head_hash", String(DIGEST_LENGTH), nullable=True),
    # The running turn was asked to stop (PROTOCOL section 6.5).
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # The principal that started the session (domain/principals.py); NULL: no auth then.
    Column("owner", String(PRINCIPAL_LENGTH), nullable=True),
)

# The side chain of each session's facts without a seq (refusals, recoveries): how many,
# and its head (infra/chain.py). Apart from the projection row, so that a flood of
# refusals never updates or locks the row its owner's turns write.
side_chains = Table(
    "side_chains",
    metadata,
    Column("session_id", SessionIdType, primary_key=True),
    Column("refusals", Integer, nullable=False),
    Column("refusal_head", String(DIGEST_LENGTH), nullable=True),
)

# Sessions `baton prune` removed, with the heads their chains had then: a session an anchor
# (infra/anchors.py) names and the database no longer holds is reported as pruned, not as
# tampered with, when it is here with chains at least as long as the anchor's.
pruned = Table(
    "pruned",
    metadata,
    Column("session_id", SessionIdType, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("head_hash", String(DIGEST_LENGTH), nullable=True),
    Column("refusals", Integer, nullable=False),
    Column("refusal_head", String(DIGEST_LENGTH), nullable=True),
    Column("pruned_at", UtcDateTime(), nullable=False),
)

# What recovery needs (PROTOCOL section 6.2): each committed turn's issued token, sealed
# under the token it consumed (a keyed start: under its Idempotency-Key). Kept apart from
# the events and their hash chain, never exported, and erased when the next turn is claimed
# or the window passes (domain/recovery.py).
recovery = Table(
    "recovery",
    metadata,
    # The digest of the consumed token, or of the Idempotency-Key of a start.
    Column("lookup", String(DIGEST_LENGTH), primary_key=True),
    Column("session_id", SessionIdType, nullable=False),
    Column("turn", Integer, nullable=False),
    Column("sealed", String(64), nullable=True),  # NULL while a keyed start's turn runs
    Column("key_digest", String(DIGEST_LENGTH), nullable=True),
    Column("fingerprint", String(DIGEST_LENGTH), nullable=True),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index(None, "session_id"),
    Index(None, "expires_at"),
)

# Sessions someone follows from another replica (GET .../events as a stream): a write to
# one of them wakes its followers at once (PostgreSQL NOTIFY) instead of at their next poll.
followers = Table(
    "followers",
    metadata,
    Column("session_id", SessionIdType, primary_key=True),
    Column("until", UtcDateTime(), nullable=False),
)


# Refused requests per client in the current window (api/refusal_limit.py), shared by every
# replica: a client past its limit is answered 429 and its refusals stop being stored.
refusal_budgets = Table(
    "refusal_budgets",
    metadata,
    Column("client", String(PRINCIPAL_LENGTH), primary_key=True),  # a principal or an address
    Column("refused", Integer, nullable=False),
    Column("window_end", UtcDateTime(), nullable=False),
    Index(None, "window_end"),
)

# The projection's columns in table order: the stores' hand-written SQL names them this way.
SESSION_FIELDS = tuple(column.name for column in sessions.columns)
# What a loaded session is: its projection row (s) with its side chain's heads (c).
LOADED_COLUMNS = (
    ", ".join(f"s.{field}" for field in SESSION_FIELDS) + ", c.refusals, c.refusal_head"
)
# A projection row joined with its side chain's heads: how every store loads a session.
LOAD_SESSION = (
    f"SELECT {LOADED_COLUMNS} FROM sessions AS s "  # noqa: S608
    "LEFT JOIN side_chains AS c ON c.session_id = s.session_id WHERE s.session_id = "
)


def sessions_with_side_chains() -> Select[Any]:
    """The projection rows joined with their side chains' heads (NULL: no side facts)."""
    joined = sessions.outerjoin(side_chains, side_chains.c.session_id == sessions.c.session_id)
    return select(sessions, side_chains.c.refusals, side_chains.c.refusal_head).select_from(joined)


# The columns a change of state writes.
UPDATED_FIELDS = tuple(
    field for field in SESSION_FIELDS if field not in {"session_id", "created_at"}
)
# The event table's columns a store writes (position and txid are the database's).
EVENT_FIELDS = (
    "session_id",
    "seq",
    "refusal_seq",
    "kind",
    "turn",
    "consumed",
    "issued",
    "data",
    "recorded_at",
    "hash",
)
