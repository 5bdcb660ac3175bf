"""Where a session's secret lives between turns: a pluggable token store.

A store holds one session: its id, its current token, and while a turn is under way the
turn's Idempotency-Key and its input's fingerprint. Nothing else, never the input itself.
The client saves the pending key *before* it sends a turn and the new token (with no pending
key) once the turn's outcome is known, so a process killed at any moment restarts knowing
either the current token, or the token it presented and the key it presented it with: then
sending the same input again reuses the key (the server answers the committed turn's reply
again), and any other input first reads the session to learn whether that turn committed.

`FileTokenStore` writes JSON atomically (a temporary file, fsync, `os.replace`, fsync of the
directory) with mode 0600. Its methods block on the disk; they are short and called between
turns, so the async client calls them directly.
"""

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

FIELDS = {
    "session_id": "sessionId",
    "token": "continuationToken",
    "pending_key": "pendingKey",
    "pending_fingerprint": "pendingFingerprint",
}


@dataclass(frozen=True, slots=True)
class SavedSession:
    session_id: str | None = None  # None: a start under way
    token: str | None = field(default=None, repr=False)
    pending_key: str | None = None
    pending_fingerprint: str | None = None

    def to_json(self) -> dict[str, str]:
        return {
            name: getattr(self, attribute)
            for attribute, name in FIELDS.items()
            if getattr(self, attribute) is not None
        }

    @classmethod
    def from_json(cls, data: Any) -> "SavedSession":
        if not isinstance(data, dict):
            raise ValueError("a saved session is a JSON object")
        values = {attribute: data.get(name) for attribute, name in FIELDS.items()}
        if not all(value is None or isinstance(value, str) for value in values.values()):
            raise ValueError("a saved session holds strings only")
        return cls(**values)


class TokenStore(Protocol):
    def load(self) -> SavedSession | None: ...

    def save(self, saved: SavedSession) -> None: ...

    def clear(self) -> None: ...


class MemoryTokenStore:
    """For the life of the process only (the default)."""

    def __init__(self, saved: SavedSession | None = None) -> None:
        self._saved = saved

    def load(self) -> SavedSession | None:
        return self._saved

    def save(self, saved: SavedSession) -> None:
        self._saved = saved

    def clear(self) -> None:
        self._saved = None


class FileTokenStore:
    """A JSON file, replaced atomically on every save, readable by its owner only."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> SavedSession | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return SavedSession.from_json(json.loads(text))

    def save(self, saved: SavedSession) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(saved.to_json()).encode()
        # mkstemp creates the file 0600, in the same directory so os.replace is atomic.
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                os.fchmod(file.fileno(), 0o600)
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._sync_directory()

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            self._sync_directory()

    def _sync_directory(self) -> None:
        """Make the rename (or unlink) itself durable."""
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
