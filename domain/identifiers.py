"""The two identifiers of PROTOCOL section 1: a session id that names, a token that authorises."""

import base64
import hashlib
import re
from collections.abc import Callable
from typing import NewType

SessionId = NewType("SessionId", str)
"""A canonical, lower-case, hyphenated UUID (version 7: time-ordered)."""

TokenDigest = NewType("TokenDigest", str)
"""SHA-256 of a continuation token, hex. The only form of a token that is ever stored."""

RandomBytes = Callable[[int], bytes]
"""Injected randomness, `secrets.token_bytes` in production."""

TOKEN_BYTES = 32  # 256 bits from a CSPRNG (PROTOCOL section 1)

_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def new_session_id(unix_ms: int, random_bytes: RandomBytes) -> SessionId:
    """A UUIDv7 (RFC 9562): 48 bits of milliseconds, then random bits.

    Time-ordered ids keep inserts at the right edge of B-tree indexes.
    """
    rand = int.from_bytes(random_bytes(10), "big")
    rand_a = rand >> 68 & 0xFFF  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    text = f"{value:032x}"
    return SessionId(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")


def parse_session_id(text: str) -> SessionId | None:
    """The session id named by a client, or None if it cannot name any session."""
    lowered = text.lower()
    return SessionId(lowered) if _UUID_TEXT.fullmatch(lowered) else None


def mint_token(random_bytes: RandomBytes) -> str:
    """A fresh continuation token: 256 random bits, URL-safe base64, no structure."""
    return base64.urlsafe_b64encode(random_bytes(TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def digest_token(token: str) -> TokenDigest:
    """What the store keeps instead of the token (PROTOCOL section 1)."""
    return TokenDigest(hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest())


# Domain separation: the pad that seals a token is never the digest the table stores, and
# a token sealed under a consumed token never shares a pad with one sealed under a key.
_SEAL_CONTEXT = b"baton/v1/seal-next-token\x00"
_KEY_SEAL_CONTEXT = b"baton/v1/seal-first-token\x00"


def _pad(secret: str, context: bytes = _SEAL_CONTEXT) -> bytes:
    return hashlib.sha256(context + secret.encode("utf-8", "surrogatepass")).digest()


def _decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def seal_token(next_token: str, consumed_token: str) -> str:
    """The next token, readable only by whoever holds the token it replaces.

    A client whose reply was lost in transit still holds the token it presented, and that
    is enough to recover the token the commit issued, while a copy of the database is not:
    the pad is SHA-256 of the consumed token (never stored), and as a token is consumed
    once, ever, each pad seals exactly one value.
    """
    return _xor(next_token, _pad(consumed_token))


def unseal_token(sealed: str, consumed_token: str) -> str:
    """The inverse of seal_token; check the result against the stored digest before use."""
    return seal_token(sealed, consumed_token)  # XOR with the same pad undoes itself


def seal_under_key(first_token: str, idempotency_key: str) -> str:
    """A start's first token, readable only by whoever holds the start's Idempotency-Key
    (PROTOCOL section 6.4: on a start, the key is the only secret the client has)."""
    return _xor(first_token, _pad(idempotency_key, _KEY_SEAL_CONTEXT))


def unseal_under_key(sealed: str, idempotency_key: str) -> str:
    return seal_under_key(sealed, idempotency_key)


def _xor(token: str, pad: bytes) -> str:
    raw = _decode(token)
    if len(raw) != len(pad):
        raise ValueError("only a token of 32 bytes can be sealed")
    # XOR as one big integer: a byte-by-byte generator cost 20 µs of every turn.
    sealed = (int.from_bytes(raw, "big") ^ int.from_bytes(pad, "big")).to_bytes(len(raw), "big")
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
