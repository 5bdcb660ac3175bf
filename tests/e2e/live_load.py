"""A live database for the operator's commands: a real server running turns in a loop, a
client hammering sessions with refusals, and many closed sessions cloned from a real one."""

import copy
import secrets
import threading
import uuid
from collections import Counter
from typing import Any

import httpx

from tests.infra.exports import Record, rehash

TIMEOUT = 30


class TurnLoop:
    """One thread per session, each running turns with the session's current token until
    stopped; `turns` counts the turns that committed (each a 200 with a new token)."""

    def __init__(self, url: str, sessions: list[tuple[str, str]]) -> None:
        self._url = url
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.turns = 0
        self.failures: list[str] = []
        self._threads = [threading.Thread(target=self._run, args=pair) for pair in sessions]

    def _run(self, session_id: str, token: str) -> None:
        with httpx.Client(base_url=self._url, timeout=TIMEOUT) as client:
            while not self._stop.is_set():
                reply = client.post(
                    f"/v1/session/{session_id}/message",
                    json={"message": "and on", "continuationToken": token},
                )
                if reply.status_code != 200 or "continuationToken" not in reply.json():
                    self.failures.append(f"{reply.status_code} {reply.text}")
                    return
                token = reply.json()["continuationToken"]
                with self._lock:
                    self.turns += 1

    def __enter__(self) -> "TurnLoop":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT)


class RefusalSpam:
    """A thread sending continues with a wrong token to `targets`, round and round: each
    answer is a refusal the server stores (409 stale-token, or 404 unknown-session once a
    session is gone). `answers` counts them by target and status."""

    def __init__(self, url: str, targets: list[str]) -> None:
        self._url, self._targets = url, targets
        self._stop = threading.Event()
        self.answers: Counter[tuple[str, int]] = Counter()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=TIMEOUT) as client:
            while not self._stop.is_set():
                for session_id in self._targets:
                    if self._stop.is_set():
                        return
                    reply = client.post(
                        f"/v1/session/{session_id}/message",
                        json={"message": "let me in", "continuationToken": "not-the-token"},
                    )
                    self.answers[(session_id, reply.status_code)] += 1

    def __enter__(self) -> "RefusalSpam":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT)


def live_sessions(url: str, count: int) -> list[tuple[str, str]]:
    """New sessions, idle after their first turn: (id, current token)."""
    made = []
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        for _ in range(count):
            started = client.post("/v1/session", json={"message": "hi"}).json()
            made.append((started["sessionId"], started["continuationToken"]))
    return made


def closed_session(url: str) -> str:
    """A session with two turns, a refusal and a close."""
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        started = client.post("/v1/session", json={"message": "hi"}).json()
        session_id, token = started["sessionId"], started["continuationToken"]
        reply = client.post(
            f"/v1/session/{session_id}/message", json={"message": "two", "continuationToken": token}
        )
        token = reply.json()["continuationToken"]
        client.post(f"/v1/session/{session_id}/message", json={"message": "no token"})
        closed = client.delete(f"/v1/session/{session_id}", headers={"X-Continuation-Token": token})
        assert closed.status_code == 200, closed.text
    return session_id


def clones(template: list[Record], count: int) -> list[Record]:
    """An export of `count` sessions, each the template's one session under a new id with
    tokens of its own, every hash computed again."""
    header, *lines, end = template
    records: list[Record] = [header]
    for _ in range(count):
        records += _clone(lines)
    return rehash([*records, end], renumber=False)


def _clone(lines: list[Record]) -> list[Record]:
    session_id, previous = str(uuid.uuid4()), None
    cloned = []
    for line in copy.deepcopy(lines):
        line["sessionId"] = session_id
        if line["kind"] == "committed":
            line["consumed"], line["issued"] = previous, secrets.token_hex(32)
            previous = line["issued"]
        cloned.append(line)
    return cloned


def refusals_naming(records: list[dict[str, Any]], session_ids: set[str]) -> int:
    """Refusals of `session_ids`: in their side chains, or standing alone naming them."""
    return sum(
        1
        for record in records
        if record["kind"] == "refused"
        and (
            record["session_id"] in session_ids
            or (record["session_id"] is None and record["data"].get("sessionId") in session_ids)
        )
    )
