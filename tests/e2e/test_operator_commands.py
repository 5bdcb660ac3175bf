"""The operator's commands, run as processes on real databases: replay, verify, export and
import (SQLite <-> PostgreSQL), and prune."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import update

from baton.infra.tables import events, sessions
from tests.databases import fresh_database
from tests.e2e.operators import baton
from tests.e2e.server import BatonServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


def sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def run_sql(url: str, statement: object) -> None:
    engine = create_sync_engine(sync_url(url))
    with engine.begin() as conn:
        conn.execute(statement)  # type: ignore[call-overload]
    engine.dispose()


def sessions_with_history(server: BatonServer, count: int) -> list[tuple[str, str]]:
    """Sessions with a few turns, a failed one and a refusal each; (id, current token)."""
    made = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(count):
            started = client.post("/v1/session", json={"message": "hi"}).json()
            session_id, token = started["sessionId"], started["continuationToken"]
            for message in ("two", "/fail", "three"):
                reply = client.post(
                    f"/v1/session/{session_id}/message",
                    json={"message": message, "continuationToken": token},
                )
                if reply.status_code == 200:
                    token = reply.json()["continuationToken"]
            client.post(f"/v1/session/{session_id}/message", json={"message": "no token"})
            made.append((session_id, token))
    return made


def test_replay_check_finds_a_corrupted_projection_and_replay_mends_it(
    database: str, tmp_path: Path
) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        made = sessions_with_history(server, 3)
    healthy = baton("replay", "--check", database=database)
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout == ""

    victim = made[1][0]
    run_sql(database, update(sessions).where(sessions.c.session_id == victim).values(turn=99))
    found = baton("replay", "--check", database=database)
    assert found.returncode == 1
    assert found.stdout.strip() == f"projection differs from its events: session {victim}"

    mended = baton("replay", database=database)
    assert mended.returncode == 0, mended.stderr
    assert "rebuilt 3 session(s)" in mended.stderr
    assert baton("replay", "--check", database=database).returncode == 0


def test_verify_names_the_first_broken_link(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        made = sessions_with_history(server, 2)
    assert baton("verify", database=database).returncode == 0
    victim = made[0][0]
    run_sql(
        database,
        update(events)
        .where(events.c.session_id == victim, events.c.seq == 2)
        .values(data={"status": "finished", "output": "forged"}),
    )
    broken = baton("verify", database=database)
    assert broken.returncode == 1
    assert broken.stdout.splitlines() == [
        f"broken: session {victim}: seq 2 (event #2): hash does not match: the event was"
        " edited, or events were swapped"
    ]
    assert baton("verify", made[1][0], database=database).returncode == 0  # one session


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgresql"), ("postgresql", "sqlite")])
def test_export_import_round_trip_then_continue_with_the_current_token(
    source: str, target: str, tmp_path: Path
) -> None:
    with (
        fresh_database(source, tmp_path / "a") as origin,
        fresh_database(target, tmp_path / "b") as copy,
    ):
        with BatonServer(origin, tmp_path / "origin.log") as server:
            made = sessions_with_history(server, 2)
        exported = tmp_path / "export.jsonl"
        result = baton("export", made[0][0], made[1][0], "--output", str(exported), database=origin)
        assert result.returncode == 0, result.stderr

        assert baton("migrate", database=copy).returncode == 0
        imported = baton("import", str(exported), database=copy)
        assert imported.returncode == 0, imported.stderr
        assert "imported 2 session(s)" in imported.stderr
        assert baton("verify", database=copy).returncode == 0

        with BatonServer(copy, tmp_path / "copy.log") as server:
            session_id, token = made[0]
            reply = httpx.post(
                f"{server.url}/v1/session/{session_id}/message",
                json={"message": "after the move", "continuationToken": token},
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["turn"] == 4  # start, two, three: the failed turn counted nothing

        again = baton("import", str(exported), database=copy)
        assert again.returncode == 1
        assert "already in this database" in again.stderr


def test_a_tampered_export_is_refused_naming_the_line(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        sessions_with_history(server, 1)
    exported = tmp_path / "export.jsonl"
    assert baton("export", "--output", str(exported), database=database).returncode == 0
    lines = exported.read_text().splitlines()
    record = json.loads(lines[4])
    record["data"] = {"record": "something else"}
    lines[4] = json.dumps(record)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")

    with fresh_database("sqlite", tmp_path / "target") as target:
        assert baton("migrate", database=target).returncode == 0
        refused = baton("import", str(tampered), database=target)
        assert refused.returncode == 1
        assert "import refused: line 5: hash does not match" in refused.stderr
        assert baton("export", database=target).stdout.count("\n") == 2  # header, end: empty


def test_prune_removes_exactly_the_closed_sessions(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        made = sessions_with_history(server, 4)
        for session_id, token in made[:2]:
            closed = httpx.delete(
                f"{server.url}/v1/session/{session_id}", headers={"X-Continuation-Token": token}
            )
            assert closed.status_code == 200
    pruned = baton("prune", "--closed-before", "2999-01-01", database=database, cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 2 closed session(s)" in pruned.stderr
    (exported,) = tmp_path.glob("baton-pruned-*.jsonl")
    assert {json.loads(line)["sessionId"] for line in exported.read_text().splitlines()[1:-1]} == {
        session_id for session_id, _ in made[:2]
    }
    left = baton("export", database=database).stdout
    assert {json.loads(line)["sessionId"] for line in left.splitlines()[1:-1]} == {
        session_id for session_id, _ in made[2:]
    }
    assert baton("verify", database=database).returncode == 0
    assert (
        "no closed sessions"
        in baton("prune", "--closed-before", "2999-01-01", database=database).stderr
    )


def test_an_import_refusal_is_one_clean_line_naming_the_line(database: str, tmp_path: Path) -> None:
    """Bytes, format, types, truncation, a chain: each refusal is one line on stderr, never
    a traceback, and the target is left as it was (the meaning checks: test_import_checks)."""
    with BatonServer(database, tmp_path / "server.log") as server:
        sessions_with_history(server, 1)
    exported = tmp_path / "export.jsonl"
    assert baton("export", "--output", str(exported), database=database).returncode == 0
    whole = exported.read_bytes()
    lines = whole.splitlines(keepends=True)
    broken = {
        "empty": (b"", "baton: import refused: the file is empty"),
        "cut": (whole[:-7], f"line {len(lines)}: the file ends in the middle of this line"),
        "bytes": (lines[0] + b"\xff\xfe\n", "line 2: not UTF-8 text"),
        "version": (
            b'{"format": "baton-export", "version": 9}\n',
            "line 1: baton-export version 9",
        ),
        "typed": (lines[0] + lines[1].replace(b'"seq":1', b'"seq":"1"'), "line 2: seq must be"),
        "chain": (
            lines[0] + lines[2] + b'{"end": "baton-export", "sessions": 1, "events": 1}\n',
            "line 2: seq 1 is missing (deleted?); found 2 instead",
        ),
    }
    with fresh_database("sqlite", tmp_path / "target") as target:
        assert baton("migrate", database=target).returncode == 0
        for name, (content, expected) in broken.items():
            (tmp_path / name).write_bytes(content)
            refused = baton("import", str(tmp_path / name), database=target)
            assert refused.returncode == 1, name
            assert expected in refused.stderr, (name, refused.stderr)
            assert "Traceback" not in refused.stderr
            assert refused.stderr.count("\n") == 1, refused.stderr
        assert baton("export", database=target).stdout.count("\n") == 2


def grow_then_close(server: BatonServer, made: list[tuple[str, str]]) -> None:
    """A turn more for the first two sessions (their chains grow), a close for the third."""
    for session_id, token in made[:2]:
        reply = httpx.post(
            f"{server.url}/v1/session/{session_id}/message",
            json={"message": "later", "continuationToken": token},
        )
        assert reply.status_code == 200
    session_id, token = made[2]
    closed = httpx.delete(
        f"{server.url}/v1/session/{session_id}", headers={"X-Continuation-Token": token}
    )
    assert closed.status_code == 200


async def test_verify_anchor_then_against_catches_a_consistent_rewrite(
    database: str, tmp_path: Path
) -> None:
    from baton.infra.database import create_engine
    from baton.infra.settings import Settings
    from tests.infra.test_anchors import rewrite

    anchor = tmp_path / "anchor.json"
    with BatonServer(database, tmp_path / "server.log") as server:
        made = sessions_with_history(server, 3)
        written = baton("verify", "--anchor", str(anchor), database=database)
        assert written.returncode == 0, written.stderr
        (digest,) = written.stdout.split()[2:]
        assert json.loads(anchor.read_text())["digest"] == digest
        grow_then_close(server, made)
    held = baton("verify", "--against", str(anchor), database=database)
    assert held.returncode == 0, held.stdout + held.stderr
    assert "all 3 anchored session(s) extend the anchor" in held.stderr

    pruned = baton("prune", "--closed-before", "2999-01-01", "--no-export", database=database)
    assert pruned.returncode == 0, pruned.stderr
    noted = baton("verify", "--against", str(anchor), database=database)
    assert noted.returncode == 0
    assert noted.stdout.startswith(f"pruned: session {made[2][0]}: session: pruned since")

    engine = create_engine(Settings(database_url=database))
    victim = made[0][0]
    await rewrite(engine, victim, seq=2, data={"status": "finished", "output": "forged"})
    await engine.dispose()
    assert baton("verify", database=database).returncode == 0  # the forgery holds together
    caught = baton("verify", "--against", str(anchor), database=database)
    assert caught.returncode == 1
    (seq,) = [
        entry["seq"]
        for entry in json.loads(anchor.read_text())["sessions"]
        if entry["sessionId"] == victim
    ]
    assert f"anchor: session {victim}: seq {seq}: the chain no longer passes" in caught.stdout
    assert "1 session(s) do not extend the anchor" in caught.stderr


def test_a_malformed_anchor_is_a_clean_error(database: str, tmp_path: Path) -> None:
    assert baton("migrate", database=database).returncode == 0
    for name, content in (("half", '{"format": "baton-anchor"'), ("other", "[]")):
        (tmp_path / name).write_text(content)
        ran = baton("verify", "--against", str(tmp_path / name), database=database)
        assert ran.returncode == 2
        assert ran.stderr.startswith(f"baton: error: anchor {tmp_path / name}: ")
        assert "Traceback" not in ran.stderr
    missing = baton("verify", "--against", str(tmp_path / "nowhere"), database=database)
    assert missing.returncode == 2
    assert "No such file" in missing.stderr


def test_no_anchor_is_written_over_a_broken_chain(database: str, tmp_path: Path) -> None:
    with BatonServer(database, tmp_path / "server.log") as server:
        made = sessions_with_history(server, 1)
    run_sql(
        database,
        update(events)
        .where(events.c.session_id == made[0][0], events.c.seq == 2)
        .values(data={"status": "finished", "output": "forged"}),
    )
    refused = baton("verify", "--anchor", str(tmp_path / "a.json"), database=database)
    assert refused.returncode == 1
    assert "no anchor written" in refused.stderr
    assert not (tmp_path / "a.json").exists()
