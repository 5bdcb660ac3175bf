"""Reading an export's lines (infra/export_format.py): the header, each event line's fields
and their types, the end line. Every problem is an ImportRefused naming its line.

What the lines mean is infra/import_checks.py's to judge, and whether their chains hold
infra/audit.py's; both need the fields typed first, which is all this module does to an
event line (its `data` only has to be an object here: decoding it comes after the hash
check, so that a tampered payload is refused for what it is).
"""

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from baton.domain.events import EventKind
from baton.domain.values import value
from baton.infra.chain import time_text
from baton.infra.export_format import FIELDS, FORMAT, READABLE, ImportRefused, camel

_HEX = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_INT = 2**31 - 1  # the columns are 32-bit
SIDE_KINDS = frozenset({EventKind.REFUSED.value, EventKind.RECOVERED.value})
_KEYS = frozenset({"sessionId", "recordedAt", *map(camel, FIELDS)})


@value
class Parsed:
    number: int  # the line's number in the file, from 1
    row: dict[str, Any]  # the event-table row it stands for, fields typed


def refuse(number: int, problem: str) -> NoReturn:
    raise ImportRefused(f"line {number}: {problem}")


@dataclass(slots=True)
class _Tally:
    """What the file held so far, for its end line to agree with."""

    sessions: int = 0
    events: int = 0
    last_session: str | None = None
    ended: int = 0  # the end line's number, once read

    def count(self, row: dict[str, Any]) -> None:
        if row["session_id"] != self.last_session:
            self.sessions, self.last_session = self.sessions + 1, row["session_id"]
        self.events += 1

    def end(self, number: int, record: dict[str, Any]) -> None:
        expected = {"end": FORMAT, "sessions": self.sessions, "events": self.events}
        if record != expected:
            refuse(
                number,
                f"the end line does not match the file, which holds {self.sessions}"
                f" session(s) and {self.events} event(s): {json.dumps(record)}",
            )
        self.ended = number


def parse(lines: Iterable[str | bytes]) -> Iterator[Parsed]:
    """The file's event lines, each with its line number, its fields typed; the header, the
    end line and the file's shape are checked on the way."""
    numbered = _texts(lines)
    first = next(numbered, None)
    if first is None:
        raise ImportRefused("the file is empty")
    version = _header(*first)
    tally, last = _Tally(), 1
    for number, text in numbered:
        last = number
        if not text.strip():
            continue
        record = _json(number, text)
        if tally.ended:
            refuse(number, f"nothing may follow the end line (line {tally.ended})")
        if isinstance(record, dict) and "end" in record and "sessionId" not in record:
            tally.end(number, record)
            continue
        parsed = Parsed(number, event_row(number, record))
        tally.count(parsed.row)
        yield parsed
    if version >= 2 and not tally.ended:
        raise ImportRefused(f"line {last}: the file ends without its end line: it was cut short")


def _texts(lines: Iterable[str | bytes]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                refuse(number, "not UTF-8 text")
        yield number, line


def _header(number: int, text: str) -> int:
    head = _json(number, text)
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        refuse(number, f"not a {FORMAT} file (its first line is not the header)")
    version = head.get("version")
    if type(version) is not int or version not in READABLE:
        readable = " and ".join(map(str, READABLE))
        refuse(number, f"{FORMAT} version {version!r}: this baton reads versions {readable}")
    return version


class _Invalid(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, item in pairs:
        if key in found:
            raise _Invalid(f"the key {key!r} appears twice")
        found[key] = item
    return found


def _no_constant(name: str) -> NoReturn:
    raise _Invalid(f"{name} is not a number JSON allows")


def _json(number: int, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except _Invalid as error:
        refuse(number, f"not valid JSON: {error}")
    except json.JSONDecodeError as error:
        if not text.endswith("\n"):
            refuse(number, "the file ends in the middle of this line: it was cut short")
        refuse(number, f"not JSON ({error.msg} at column {error.colno})")


# --------------------------------------------------------------- an event line's fields


def _id(value: Any) -> str | None:
    ok = isinstance(value, str) and _UUID.fullmatch(value)
    return None if ok else "must be a session id (a lower-case UUID)"


def _place(value: Any) -> str | None:
    ok = value is None or (type(value) is int and 1 <= value <= _MAX_INT)
    return None if ok else "must be a positive integer or null"


def _turn(value: Any) -> str | None:
    ok = value is None or (type(value) is int and 0 <= value <= _MAX_INT)
    return None if ok else "must be an integer (0 or more) or null"


def _kind(value: Any) -> str | None:
    known = {kind.value for kind in EventKind}
    return None if value in known else f"must be one of {', '.join(sorted(known))}"


def _digest(value: Any) -> str | None:
    ok = isinstance(value, str) and _HEX.fullmatch(value)
    return None if ok else "must be a SHA-256 digest (64 lower-case hex digits)"


def _token(value: Any) -> str | None:
    return None if value is None else _digest(value)


def _data(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "sessionId": _id,
    "seq": _place,
    "refusalSeq": _place,
    "kind": _kind,
    "turn": _turn,
    "consumed": _token,
    "issued": _token,
    "data": _data,
    "hash": _digest,
}


def event_row(number: int, record: Any) -> dict[str, Any]:
    """An event line's fields as the event-table row they stand for."""
    if not isinstance(record, dict):
        refuse(number, "not a JSON object")
    for key in sorted(_KEYS - record.keys()):
        refuse(number, f"the field {key!r} is missing")
    for key in sorted(record.keys() - _KEYS):
        refuse(number, f"unexpected field {key!r}")
    for key, check in _CHECKS.items():
        problem = check(record[key])
        if problem is not None:
            refuse(number, f"{key} {problem}, not {_shown(record[key])}")
    row = {field: record[camel(field)] for field in FIELDS}
    row["session_id"] = record["sessionId"]
    row["recorded_at"] = _time(number, record["recordedAt"])
    _shape(number, row)
    return row


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _time(number: int, value: Any) -> datetime:
    """recordedAt, written exactly as the chain hashes it."""
    at = None
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            at = None
    if at is None or at.tzinfo is None or time_text(at) != value:
        shown = _shown(value)
        refuse(number, f"recordedAt must be a UTC time as YYYY-MM-DDTHH:MM:SS.ffffffZ, not {shown}")
    return at


def _shape(number: int, row: dict[str, Any]) -> None:
    """The fields a kind of event has and has not."""
    kind = row["kind"]
    side = kind in SIDE_KINDS
    problem = None
    if side and (row["seq"] is not None or row["turn"] is not None):
        problem = "takes no seq and names no turn (it changes no state)"
    elif side and row["refusal_seq"] is None:
        problem = "needs its refusalSeq (its place in the side chain)"
    elif not side and (row["seq"] is None or row["turn"] is None):
        problem = "needs its seq and its turn"
    elif not side and row["refusal_seq"] is not None:
        problem = "takes no refusalSeq (only refusals and recoveries do)"
    elif kind == EventKind.COMMITTED and row["issued"] is None:
        problem = "issues a token (issued may not be null)"
    elif kind != EventKind.COMMITTED and (row["consumed"] or row["issued"]):
        problem = "consumes and issues no token (only a 'committed' event does)"
    if problem is not None:
        refuse(number, f"a {kind!r} event {problem}")
