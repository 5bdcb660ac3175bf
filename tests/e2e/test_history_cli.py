"""`baton history`, the real console script, reading the database with no server running."""

import asyncio
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from httpx import Response
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.api.app import create_app
from baton.api.demo import demo_handler
from baton.infra.settings import Settings
from tests.api.conftest import in_process_client, running
from tests.api.protocol import events_of
from tests.api.test_admin import EVENTFUL_KINDS, eventful_session
from tests.e2e.server import BATON

pytestmark = pytest.mark.e2e

LINE = re.compile(
    r" *(?P<position>\d+)  (?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)  (?P<kind>\w+) +"
    r"(?P<turn>turn \d+|-) *(?P<summary>.*)"
)


@dataclass(frozen=True)
class Ran:
    status: int
    stdout: str
    stderr: str


async def baton(*args: str, environ: dict[str, str] | None = None) -> Ran:
    process = await asyncio.create_subprocess_exec(
        str(BATON),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(environ or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


@dataclass(frozen=True)
class Recorded:
    session_id: str
    tokens: list[str]  # every token the client was given, none of which may be printed


@pytest.fixture(scope="module")
async def recorded(settings: Settings, engine: AsyncEngine) -> Recorded:
    """An eventful session written by the app, which is then stopped: the CLI needs none."""
    tokens: list[str] = []

    async def note_token(response: Response) -> None:
        await response.aread()
        body = response.json() if response.headers.get("content-type") == "application/json" else {}
        if isinstance(body, dict) and "continuationToken" in body:
            tokens.append(body["continuationToken"])

    app = create_app(settings, handler=demo_handler)
    async with running(app), in_process_client(app) as client:
        client.event_hooks = {"request": [], "response": [note_token]}
        session_id = await eventful_session(client)
    return Recorded(session_id, tokens)


async def test_the_text_history_shows_every_event_as_stored(
    recorded: Recorded, database_url: str, engine: AsyncEngine
) -> None:
    ran = await baton("history", recorded.session_id, "--database-url", database_url)
    assert ran.status == 0, ran.stderr
    lines = [LINE.fullmatch(line) for line in ran.stdout.splitlines()]
    assert all(lines), ran.stdout
    parsed = [match.groupdict() for match in lines if match]
    rows = await events_of(engine, recorded.session_id)
    assert [line["kind"] for line in parsed] == EVENTFUL_KINDS
    assert [int(line["position"]) for line in parsed] == [row["position"] for row in rows]
    assert [line["at"] for line in parsed] == [
        row["recorded_at"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" for row in rows
    ]
    summaries = [line["summary"] for line in parsed]
    assert summaries[0] == 'input {"message":"hello"}'
    assert summaries[1] == '{"role":"user","text":"hello"}'
    records = [line["summary"] for line in parsed if line["kind"] == "record"]
    assert [record.endswith("(void)") for record in records] == [False, False, True]
    assert summaries[6:8] == ["stale-token", "missing-token"]
    assert summaries[10] == "failed: the demo handler was asked to fail"
    assert summaries[11] == "cause client"
    first_commit, second_commit = rows[2], rows[5]
    assert summaries[2].endswith(f"token none->{first_commit['issued'][:8]}")
    assert summaries[5].endswith(
        f"token {second_commit['consumed'][:8]}->{second_commit['issued'][:8]}"
    )
    assert summaries[5].startswith('finished output={"reply":"You said: again","turn":2}')
    assert recorded.tokens
    assert not [token for token in recorded.tokens if token in ran.stdout]


async def test_a_long_input_is_abbreviated(settings: Settings, database_url: str) -> None:
    app = create_app(settings, handler=demo_handler)
    async with running(app), in_process_client(app) as client:
        started = (await client.post("/v1/session", json={"message": "word " * 100})).json()
    ran = await baton("history", started["sessionId"], "--database-url", database_url)
    first = LINE.fullmatch(ran.stdout.splitlines()[0])
    assert first is not None
    assert (
        first["summary"]
        == "input " + '{"message":"word word word word word word word word word ...'
    )


async def test_json_history_is_every_field_of_every_event(
    recorded: Recorded, database_url: str, engine: AsyncEngine
) -> None:
    ran = await baton(
        "history", recorded.session_id, "--json", environ={"BATON_DATABASE_URL": database_url}
    )
    assert ran.status == 0, ran.stderr
    printed: list[dict[str, Any]] = json.loads(ran.stdout)
    rows = await events_of(engine, recorded.session_id)
    for row in rows:
        del row["txid"]
    for event, row in zip(printed, rows, strict=True):
        assert event.pop("void") is (event["kind"] == "record" and event["turn"] == 3)
        assert event.pop("principal") == row["data"].get("principal")  # None: no auth here
        event["recordedAt"] = datetime.fromisoformat(event["recordedAt"])
        assert list(event.values()) == list(row.values())
    assert len(printed) == len(rows)


@pytest.mark.parametrize("session_id", ["0190a5b0-0000-7000-8000-000000000000", "nonsense"])
async def test_an_unknown_session_is_an_error_on_stderr_and_status_1(
    database_url: str, engine: AsyncEngine, session_id: str
) -> None:
    ran = await baton("history", session_id, "--database-url", database_url)
    assert (ran.status, ran.stdout) == (1, "")
    assert f"unknown session '{session_id}'" in ran.stderr


async def test_a_sqlite_path_with_no_database_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    unknown = "0190a5b0-0000-7000-8000-000000000000"
    ran = await baton("history", unknown, "--database-url", f"sqlite:///{missing}")
    assert ran.status == 2
    assert "no SQLite database" in ran.stderr
    assert not missing.exists()


async def test_after_and_limit_print_a_part_and_json_stays_an_array(
    recorded: Recorded, database_url: str, engine: AsyncEngine
) -> None:
    stored = [row["position"] for row in await events_of(engine, recorded.session_id)]
    whole = await baton("history", recorded.session_id, "--database-url", database_url)
    lines = whole.stdout.splitlines()
    assert [int(line.split()[0]) for line in lines] == stored
    part = await baton(
        "history",
        recorded.session_id,
        "--after",
        str(stored[1]),
        "--limit",
        "3",
        "--database-url",
        database_url,
    )
    assert part.status == 0, part.stderr
    assert part.stdout.splitlines() == lines[2:5]
    as_json = await baton(
        "history", recorded.session_id, "--json", "--limit", "2", "--database-url", database_url
    )
    assert [event["position"] for event in json.loads(as_json.stdout)] == stored[:2]
    past_the_end = await baton(
        "history",
        recorded.session_id,
        "--json",
        "--after",
        str(stored[-1]),
        "--database-url",
        database_url,
    )
    assert json.loads(past_the_end.stdout) == []
    for bad in (["--after", "-1"], ["--limit", "0"], ["--after", "x" * 30]):
        refused = await baton("history", recorded.session_id, *bad, "--database-url", database_url)
        assert refused.status == 2, refused
        assert "Traceback" not in refused.stderr
