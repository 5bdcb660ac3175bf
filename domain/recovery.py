"""Recovery (PROTOCOL section 6): what lets a client whose reply was lost carry on.

A commit keeps the token it issued sealed under the token it consumed (a keyed start: the
first token sealed under its Idempotency-Key), in a `Seal` outside the event data and the
hash chain. Whoever holds the consumed token can read the turn it committed and recover the
issued token, until the next turn is claimed or the window passes; a retry that brings the
same Idempotency-Key and input gets the turn's reply again. The rules for both are here.
"""

import hashlib
from datetime import datetime
from enum import Enum
from typing import NewType

from baton.domain import refusals
from baton.domain.events import Recovered, RecoveredVia, SessionEvent
from baton.domain.identifiers import SessionId, TokenDigest
from baton.domain.json import JsonObject, canonical_encoder
from baton.domain.refusals import Refusal
from baton.domain.state import SessionState, SessionStatus
from baton.domain.values import value

KeyDigest = NewType("KeyDigest", str)
"""SHA-256 of an Idempotency-Key, domain-separated: never equal to a token's digest."""

_KEY_CONTEXT = b"baton/v1/idempotency-key\x00"


def key_digest(key: str, principal: str | None = None) -> KeyDigest:
    """The key's digest, scoped to the principal presenting it (domain/principals.py):
    tenants that happen to pick one key never find each other's seals."""
    scope = b"" if principal is None else principal.encode("utf-8", "surrogatepass") + b"\x00"
    return KeyDigest(
        hashlib.sha256(_KEY_CONTEXT + scope + key.encode("utf-8", "surrogatepass")).hexdigest()
    )


# allow_nan as json.dumps has it by default, which fingerprints were always taken with.
_canonical = canonical_encoder(allow_nan=True)


def fingerprint(input: JsonObject) -> str:
    """The digest of a turn's input, by value: key order and spacing do not matter. Seals
    keep it, so its text never changes between releases (a test pins a digest)."""
    return hashlib.sha256(_canonical(input).encode("utf-8", "surrogatepass")).hexdigest()


@value
class Idempotency:
    """A turn request's Idempotency-Key and the input it came with, as digests."""

    key: KeyDigest
    fingerprint: str


@value(kw_only=True)
class Seal:
    """What recovery needs of one committed turn: the token it issued, sealed.

    `lookup` finds it: the digest of the token the turn consumed, or, for a keyed start,
    the key's digest (then `sealed` is None until the first turn commits)."""

    lookup: str
    session_id: SessionId
    turn: int
    sealed: str | None
    idempotency: Idempotency | None
    expires_at: datetime

    def open_at(self, at: datetime) -> bool:
        """Whether it still recovers a token at `at` (the window has not passed)."""
        return self.sealed is not None and at < self.expires_at

    def seals_last_turn_of(self, state: SessionState | None, at: datetime) -> bool:
        """Whether it recovers the token `state` holds now: it sealed the session's last
        committed turn, no later turn was claimed, and the window has not passed."""
        return (
            state is not None
            and self.session_id == state.session_id
            and self.turn == state.turn
            and state.claim is None
            and self.open_at(at)
        )


class Forget(Enum):
    """Which of a session's seals a decision erases."""

    NEXT_TOKENS = "next-tokens"  # a later turn was claimed: the last turn's seal is spent
    ALL = "all"  # the start failed: its key may start a session again


@value
class Replay:
    """A retried turn that already committed: its reply again (PROTOCOL section 6.4)."""

    session_id: SessionId
    turn: int
    seal: Seal
    # The turn's events, when the store read them with the recovery it recorded (in one
    # round trip); None: the driver reads them.
    events: tuple[SessionEvent, ...] | None = None


@value
class ReadAccess:
    """What a read may see: the session as it is, and, when the presented token is the one
    the last turn consumed, that turn's seal (its outcome then carries the token)."""

    state: SessionState
    recovered: Seal | None = None


def recovered(
    seal: Seal, via: RecoveredVia, at: datetime, principal: str | None = None
) -> Recovered:
    return Recovered(
        session_id=seal.session_id, turn=seal.turn, via=via, at=at, principal=principal
    )


def authorise_read(
    state: SessionState | None,
    session_id: str,
    presented: TokenDigest | None,
    seal: Seal | None,
    at: datetime,
) -> ReadAccess | Refusal:
    """PROTOCOL sections 6.1 and 6.2: the current token reads the session, and so does the
    token its last turn consumed, within the window; a read never answers in-flight."""
    if state is None:
        return refusals.unknown_session(session_id)
    if presented is None:
        return refusals.MISSING_TOKEN
    if presented == state.token_digest:
        access = ReadAccess(state)
    elif seal is not None and seal.seals_last_turn_of(state, at):
        access = ReadAccess(state, seal)
    else:
        return refusals.STALE_TOKEN
    if state.status is SessionStatus.CLOSED:
        return refusals.closed(state.session_id)
    return access


def replay_or_refuse(
    idempotency: Idempotency, seal: Seal | None, state: SessionState | None, at: datetime
) -> Replay | Refusal:
    """A retry whose token the turn it retries consumed (PROTOCOL section 6.4): its reply
    again when the key and the input are the ones it committed with; another input with the
    same key is a mismatch; anything else is what it would be without the key."""
    if seal is None or not seal.seals_last_turn_of(state, at):
        return refusals.STALE_TOKEN
    if seal.idempotency is None or seal.idempotency.key != idempotency.key:
        return refusals.STALE_TOKEN  # a key never authorises anything by itself
    if seal.idempotency.fingerprint != idempotency.fingerprint:
        return refusals.IDEMPOTENCY_MISMATCH
    return Replay(seal.session_id, seal.turn, seal)


def replay_start(
    idempotency: Idempotency, seal: Seal, state: SessionState | None, at: datetime
) -> Replay | Refusal:
    """A start retried with a key that started a session already: never a second session."""
    if seal.idempotency is None or seal.idempotency.fingerprint != idempotency.fingerprint:
        return refusals.IDEMPOTENCY_MISMATCH
    if seal.sealed is None:
        return refusals.IN_FLIGHT  # its first turn is still running
    if not seal.seals_last_turn_of(state, at):
        return refusals.KEY_SPENT  # the session it started went on to later turns
    return Replay(seal.session_id, seal.turn, seal)
