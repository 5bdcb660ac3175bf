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
