"""The anchor file (infra/anchors.py): written as it streams, read back whole and checked.

    {"format": "baton-anchor", "version": 1, "writtenAt": "2026-...Z",
     "sessions": [{"sessionId", "seq", "head", "refusals", "refusalHead"}, ...],
     "count": N, "digest": "<hex>"}

Sessions come in session id order. `seq` and `head` are the session's version and the hash
of its event at that seq; `refusals` and `refusalHead` its side chain's length and last
link (0 and null when it has none). The digest is SHA-256 over each entry's canonical JSON
(sorted keys, no spaces) followed by a newline, in file order: short enough to print and
keep somewhere else again, where an edit of the anchor itself shows.
"""

import hashlib
import json
import re
from itertools import pairwise
from typing import Any, TextIO

from baton.domain.values import value

FORMAT = "baton-anchor"
VERSION = 1
_HEX = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class AnchorRefused(ValueError):
    """The anchor file cannot be used; the message says why."""


@value
class Entry:
    session_id: str
    seq: int
    head: str
    refusals: int
    refusal_head: str | None

    def record(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "seq": self.seq,
            "head": self.head,
            "refusals": self.refusals,
            "refusalHead": self.refusal_head,
        }

    def canonical(self) -> bytes:
        return json.dumps(self.record(), sort_keys=True, separators=(",", ":")).encode() + b"\n"


@value
class Anchor:
    written_at: str
    entries: tuple[Entry, ...]
    digest: str


class AnchorWriter:
    """Writes the file an entry at a time, the digest last."""

    def __init__(self, out: TextIO, written_at: str) -> None:
        self._out, self._digest, self.count = out, hashlib.sha256(), 0
        head = {"format": FORMAT, "version": VERSION, "writtenAt": written_at}
        out.write(json.dumps(head)[:-1] + ', "sessions": [')

    def add(self, entry: Entry) -> None:
        self._out.write(("," if self.count else "") + "\n  " + json.dumps(entry.record()))
        self._digest.update(entry.canonical())
        self.count += 1

    def end(self) -> str:
        digest = self._digest.hexdigest()
        self._out.write(f'\n], "count": {self.count}, "digest": "{digest}"}}\n')
        self._out.flush()
        return digest


def read_anchor(text: str) -> Anchor:
    """The anchor in `text`, or AnchorRefused saying what is wrong with it."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise AnchorRefused(f"not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise AnchorRefused(f"not a {FORMAT} file")
    if document.get("version") != VERSION or type(document.get("version")) is not int:
        raise AnchorRefused(f"{FORMAT} version {document.get('version')!r}: this baton reads 1")
    sessions, written_at = document.get("sessions"), document.get("writtenAt")
    if not isinstance(sessions, list) or not isinstance(written_at, str):
        raise AnchorRefused("an anchor has a writtenAt time and a list of sessions")
    entries = tuple(_entry(number, record) for number, record in enumerate(sessions, start=1))
    _in_order(entries)
    return Anchor(written_at, entries, _digest(document, entries))


def _entry(number: int, record: Any) -> Entry:
    fields = {"sessionId", "seq", "head", "refusals", "refusalHead"}
    if not isinstance(record, dict) or set(record) != fields:
        raise AnchorRefused(f"session entry {number}: not an object of {', '.join(sorted(fields))}")
    entry = Entry(
        record["sessionId"],
        record["seq"],
        record["head"],
        record["refusals"],
        record["refusalHead"],
    )
    if not _well_formed(entry):
        raise AnchorRefused(f"session entry {number}: a field has the wrong type: {record}")
    return entry


def _well_formed(entry: Entry) -> bool:
    has_refusals = type(entry.refusals) is int and entry.refusals > 0
    return (
        isinstance(entry.session_id, str)
        and bool(_UUID.fullmatch(entry.session_id))
        and type(entry.seq) is int
        and entry.seq >= 1
        and _digest_text(entry.head)
        and type(entry.refusals) is int
        and entry.refusals >= 0
        and (_digest_text(entry.refusal_head) if has_refusals else entry.refusal_head is None)
    )


def _digest_text(value: Any) -> bool:
    return isinstance(value, str) and bool(_HEX.fullmatch(value))


def _in_order(entries: tuple[Entry, ...]) -> None:
    for before, after in pairwise(entries):
        if before.session_id >= after.session_id:
            raise AnchorRefused(f"session {after.session_id} is out of order or named twice")


def _digest(document: dict[str, Any], entries: tuple[Entry, ...]) -> str:
    digest = hashlib.sha256(b"".join(entry.canonical() for entry in entries)).hexdigest()
    if document.get("count") != len(entries) or document.get("digest") != digest:
        raise AnchorRefused(
            "the count or digest does not match the sessions listed: the file was edited"
        )
    return digest
