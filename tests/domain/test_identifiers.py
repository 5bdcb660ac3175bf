"""PROTOCOL section 1: a time-ordered session id that names, a random token that authorises."""

import base64
import hashlib
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.domain.identifiers import (
    TOKEN_BYTES,
    digest_token,
    mint_token,
    new_session_id,
    parse_session_id,
    seal_token,
    unseal_token,
)

CANONICAL = "0190f5a2-1b3c-7d4e-8f60-123456789abc"
MS_MAX = (1 << 48) - 1


class FixedBytes:
    """Hands out the given bytes and remembers each size asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[int] = []

    def __call__(self, size: int) -> bytes:
        self.asked.append(size)
        return self.data[:size]


def fixed(data: bytes) -> FixedBytes:
    return FixedBytes(data)


# ---------------------------------------------------------------- new_session_id


@given(ms=st.integers(0, MS_MAX), rand=st.binary(min_size=10, max_size=10))
def test_session_id_is_a_uuid_version_7_with_the_rfc_variant(ms: int, rand: bytes) -> None:
    parsed = uuid.UUID(new_session_id(ms, fixed(rand)))
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 62 & 0b11 == 0b10


@given(ms=st.integers(0, MS_MAX), rand=st.binary(min_size=10, max_size=10))
def test_session_id_starts_with_the_48_bit_millisecond_timestamp(ms: int, rand: bytes) -> None:
    assert uuid.UUID(new_session_id(ms, fixed(rand))).int >> 80 == ms


@given(ms=st.integers(0, MS_MAX), rand=st.binary(min_size=10, max_size=10))
def test_session_id_is_canonical_lower_case_text(ms: int, rand: bytes) -> None:
    text = new_session_id(ms, fixed(rand))
    assert text == str(uuid.UUID(text))
    assert parse_session_id(text) == text


@given(
    earlier=st.integers(0, MS_MAX - 1),
    gap=st.integers(1, 10**6),
    rand_a=st.binary(min_size=10, max_size=10),
    rand_b=st.binary(min_size=10, max_size=10),
)
def test_session_ids_sort_by_time_whatever_their_random_bits(
    earlier: int, gap: int, rand_a: bytes, rand_b: bytes
) -> None:
    later = min(earlier + gap, MS_MAX)
    assert new_session_id(earlier, fixed(rand_a)) < new_session_id(later, fixed(rand_b))


def test_session_id_keeps_74_random_bits_from_the_injected_randomness() -> None:
    zeros = uuid.UUID(new_session_id(0, fixed(bytes(10))))
    ones = uuid.UUID(new_session_id(0, fixed(b"\xff" * 10)))
    version_and_variant = 0x7 << 76 | 0b10 << 62
    assert zeros.int == version_and_variant
    assert ones.int ^ zeros.int == (1 << 80) - 1 ^ (0xF << 76 | 0b11 << 62)


def test_session_id_reads_ten_bytes_of_injected_randomness() -> None:
    source = fixed(bytes(range(10)))
    new_session_id(1, source)
    assert source.asked == [10]


# ---------------------------------------------------------------- parse_session_id


def test_parse_accepts_a_canonical_id() -> None:
    assert parse_session_id(CANONICAL) == CANONICAL


def test_parse_normalises_upper_case_to_lower() -> None:
    assert parse_session_id(CANONICAL.upper()) == CANONICAL


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-a-session",
        "0190f5a2-1b3c-7d4e-8f60-123456789abg",  # not hex
        CANONICAL + "0",  # too long
        CANONICAL + "\n",
        " " + CANONICAL,
        "{" + CANONICAL + "}",  # braces
        CANONICAL.replace("-", ""),  # missing dashes
        "urn:uuid:" + CANONICAL,
        "0190f5a21-b3c-7d4e-8f60-123456789abc",  # dashes in the wrong places
        "x" * 10_000,
    ],
)
def test_parse_refuses_what_is_not_a_canonical_uuid(text: str) -> None:
    assert parse_session_id(text) is None


@given(st.text())
def test_parse_answers_only_canonical_lower_case_uuids(text: str) -> None:
    parsed = parse_session_id(text)
    assert parsed is None or (
        re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", parsed) is not None
        and parsed == text.lower()
    )


# ---------------------------------------------------------------- tokens


def test_token_is_43_url_safe_characters_from_32_bytes() -> None:
    source = fixed(bytes(range(200, 232)))
    token = mint_token(source)
    assert source.asked == [TOKEN_BYTES] == [32]
    assert len(token) == 43
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)


@given(st.binary(min_size=32, max_size=32))
def test_token_encodes_exactly_the_injected_bytes(data: bytes) -> None:
    token = mint_token(fixed(data))
    assert base64.urlsafe_b64decode(token + "=") == data


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_different_bytes_make_different_tokens(one: bytes, other: bytes) -> None:
    assert (mint_token(fixed(one)) == mint_token(fixed(other))) == (one == other)


@given(st.text())
def test_digest_is_the_sha256_hex_of_the_token(token: str) -> None:
    digest = digest_token(token)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == digest_token(token)
    assert digest != token


def test_digest_matches_a_known_sha256() -> None:
    token = mint_token(fixed(bytes(32)))
    assert digest_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert digest_token("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_digest_of_a_token_with_a_lone_surrogate_does_not_raise() -> None:
    # a JSON body can carry "\ud800"; it is a wrong token, not a crash
    assert len(digest_token("\ud800")) == 64


# ---------------------------------------------------------------- sealing the next token

tokens = st.binary(min_size=TOKEN_BYTES, max_size=TOKEN_BYTES).map(
    lambda raw: mint_token(lambda _: raw)
)


@given(next_token=tokens, consumed=tokens)
def test_the_consumed_token_unseals_the_next(next_token: str, consumed: str) -> None:
    sealed = seal_token(next_token, consumed)
    assert unseal_token(sealed, consumed) == next_token
    assert len(sealed) == len(next_token)


@given(next_token=tokens, consumed=tokens, other=tokens)
def test_any_other_token_unseals_something_that_fails_the_digest(
    next_token: str, consumed: str, other: str
) -> None:
    if other == consumed:
        return
    sealed = seal_token(next_token, consumed)
    assert digest_token(unseal_token(sealed, other)) != digest_token(next_token)


def test_the_seal_is_neither_the_token_nor_derived_from_what_is_stored() -> None:
    consumed, following = mint_token(lambda n: b"\x01" * n), mint_token(lambda n: b"\x02" * n)
    sealed = seal_token(following, consumed)
    assert sealed not in (following, consumed)
    # Knowing the stored digest of the consumed token does not give the pad.
    pad_from_digest = hashlib.sha256(digest_token(consumed).encode()).digest()
    raw_sealed = base64.urlsafe_b64decode(sealed + "=")
    guess = bytes(a ^ b for a, b in zip(raw_sealed, pad_from_digest, strict=True))
    assert base64.urlsafe_b64encode(guess).rstrip(b"=").decode() != following
