"""The export file, line by line: what `baton export` and `baton prune` write.

Version 2 (written since the import checked meaning as well as hashes):

    {"format": "baton-export", "version": 2, "sessions": [...] or null}    the header
    {"sessionId", "seq", "refusalSeq", "kind", "turn", "consumed", "issued",
     "data", "hash", "recordedAt"}                                          one line an event
    {"end": "baton-export", "sessions": N, "events": M}                     the end line

Each session's events come together, in chain order (by seq, then its refusals by their
place). The end line is what tells a whole file from one cut short at a line boundary, which
no hash can: the chains would still hold, only shorter. Version 1 files (no end line) are
still read.
"""

import json
import os
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any, TextIO

from baton.infra.chain import time_text

FORMAT = "baton-export"
VERSION = 2
READABLE = (1, 2)  # the versions an import reads
FIELDS = ("seq", "refusal_seq", "kind", "turn", "consumed", "issued", "data", "hash")


class ImportRefused(ValueError):
    """The file cannot be imported; the message names the line and says why."""


def camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def event_line(row: Mapping[Any, Any]) -> str:
    """One event-table row (or a dict of its columns) as a line, without the newline."""
    record = {
        "sessionId": str(row["session_id"]),
        **{camel(field): row[field] for field in FIELDS},
        "recordedAt": time_text(row["recorded_at"]),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


class ExportWriter:
    """Writes an export: the header at once, then events, then the end line."""

    def __init__(self, out: TextIO, session_ids: Sequence[str] | None = None) -> None:
        self._out = out
        self.sessions = 0
        self.events = 0
        self._last: str | None = None
        header = {"format": FORMAT, "version": VERSION, "sessions": session_ids}
        out.write(json.dumps(header) + "\n")

    def write(self, row: Mapping[Any, Any]) -> None:
        session_id = str(row["session_id"])
        if session_id != self._last:
            self.sessions, self._last = self.sessions + 1, session_id
        self._out.write(event_line(row) + "\n")
        self.events += 1

    def end(self) -> None:
        end = {"end": FORMAT, "sessions": self.sessions, "events": self.events}
        self._out.write(json.dumps(end) + "\n")
        self.sync()

    def sync(self) -> None:
        """Flush to the file and, for a real file, to the disk: what prune does before it
        removes the events it wrote."""
        self._out.flush()
        # A pipe, a terminal or an in-memory buffer: flushed is all there is.
        with suppress(OSError, ValueError, AttributeError):
            os.fsync(self._out.fileno())
