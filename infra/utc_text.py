"""A time as fixed-width UTC text, the one layout every stored or hashed time starts from.

`utc_micro(at)` is `at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=
"microseconds")`, written by msgspec's C encoder: CPython 3.11's isoformat formats through
printf, about 7,000 instructions a call, and a SQLite turn formats about ten times (make
bench-instructions counted it at 3% of a turn); msgspec writes the same digits in a tenth of
the time. Its RFC 3339 text differs from isoformat's in one case only, a zero fraction (left
out), which isoformat itself then writes.
"""

from datetime import UTC, datetime

import msgspec

_encode = msgspec.json.Encoder().encode
_QUOTED_WIDTH = 29  # '"YYYY-MM-DDTHH:MM:SS.ffffffZ"'


def utc_micro(at: datetime) -> str:
    """`at` in UTC as YYYY-MM-DDTHH:MM:SS.ffffff: always 26 characters, for years 1-9999.
    A naive `at` is taken as local time, as `astimezone` takes it."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    quoted = _encode(at)
    if len(quoted) != _QUOTED_WIDTH:  # a whole second: msgspec leaves the fraction out
        return at.replace(tzinfo=None).isoformat(timespec="microseconds")
    return quoted[1:27].decode()


def utc_isoformat(at: datetime) -> str:
    """Exactly `at.isoformat()`, faster for the usual case (UTC, a fraction of a second)."""
    if at.tzinfo is UTC and at.microsecond:
        return utc_micro(at) + "+00:00"
    return at.isoformat()
