"""`prune` and `replay` on a live database: a real server runs turns in a loop and takes a
stream of refusals aimed at the very sessions being pruned or replayed, on both backends.

The operator's work runs in this process, in batches made small so a run has dozens of
them, and notes how many turns the server had committed at each batch: turns
must keep committing between the first batch and the last (a run that blocked them would
count none), and nothing may be lost: every event pruned is in the export, every refusal
the client was answered is stored somewhere, and `baton verify` holds afterwards.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.infra import projection, retention
from baton.infra.database import create_engine
from baton.infra.export_format import ExportWriter
from baton.infra.projection import Rebuilt, check_sessions, rebuild_sessions
from baton.infra.retention import closed_before, prune_sessions
from baton.infra.settings import Settings
from baton.infra.tables import events, pruned, sessions
from tests.databases import fresh_database
from tests.e2e.live_load import RefusalSpam, TurnLoop, clones, closed_session, live_sessions
from tests.e2e.operators import baton
from tests.e2e.server import BatonServer
from tests.infra.exports import exported, import_text, text

pytestmark = pytest.mark.e2e
CLONES = 400  # closed sessions, 20 batches of 20
LIVE = 4  # sessions running turns throughout
FAR = datetime(2999, 1, 1, tzinfo=UTC)
MIN_TURNS = 10  # turns that must commit between the first batch and the last


@pytest.fixture
async def live(backend: str, tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, BatonServer]]:
    with fresh_database(backend, tmp_path / "db") as url:
        engine = create_engine(Settings(database_url=url))
        with BatonServer(url, tmp_path / "server.log") as server:
            yield engine, server
        await engine.dispose()


async def seeded(engine: AsyncEngine, server: BatonServer) -> list[str]:
    """CLONES closed sessions like one made through the API, and that one."""
    template = await exported(engine, closed_session(server.url))
    crafted = clones(template, CLONES)
    await import_text(engine, text(crafted))
    return sorted({template[1]["sessionId"]} | {line["sessionId"] for line in crafted[1:-1]})


async def warmed(loop: TurnLoop) -> None:
    """Until the loop has committed a few turns (so it is running when the work starts)."""
    for _ in range(600):
        if loop.turns >= 2 * LIVE or loop.failures:
            return
        await asyncio.sleep(0.05)


class CountingExport(ExportWriter):
    """An export that notes, at each batch, how many turns the server had committed."""

    def __init__(self, out: TextIO, loop: TurnLoop) -> None:
        super().__init__(out)
        self.loop, self.counts = loop, list[int]()

    def sync(self) -> None:
        super().sync()
        self.counts.append(self.loop.turns)


async def rows(engine: AsyncEngine, query: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


def refusals_naming(lines: list[dict[str, Any]], doomed: set[str], key: str) -> int:
    """Refusals of `doomed` sessions: in their side chains, or alone and naming them."""
    return sum(
        1
        for line in lines
        if line["kind"] == "refused"
        and (line[key] in doomed or (line[key] is None and line["data"].get("sessionId") in doomed))
    )


async def test_prune_on_a_live_database_loses_nothing_and_holds_no_turn_up(
    live: tuple[AsyncEngine, BatonServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, server = live
    monkeypatch.setattr(retention, "BATCH", 20)
    doomed = await seeded(engine, server)
    target = tmp_path / "pruned.jsonl"
    with (
        TurnLoop(server.url, live_sessions(server.url, LIVE)) as loop,
        RefusalSpam(server.url, doomed[::3]) as spam,
    ):
        await warmed(loop)
        with target.open("w") as out:
            export = CountingExport(out, loop)
            done = await prune_sessions(engine, await closed_before(engine, FAR), FAR, FAR, export)
            export.end()
        await asyncio.sleep(0.5)  # refusals keep coming at the sessions now gone
    assert loop.failures == []
    assert done.sessions == len(doomed)
    assert len(export.counts) == len(doomed) // 20 + 2  # a sync a batch, and the end's
    assert export.counts[-1] - export.counts[0] >= MIN_TURNS, export.counts
    print(f"prune: {export.counts[-1] - export.counts[0]} turns committed while it ran")

    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert {line["sessionId"] for line in lines[1:-1]} == set(doomed)
    assert await rows(engine, select(events).where(events.c.session_id.in_(doomed))) == []
    gone = await rows(engine, select(pruned.c.session_id))
    assert {str(row["session_id"]) for row in gone} == set(doomed)
    # Every refusal the client was answered is stored: exported, or alone afterwards.
    answered = spam.answers
    assert {status for _, status in answered} <= {404, 409}
    alone = await rows(engine, select(events).where(events.c.session_id.is_(None)))
    stored = refusals_naming(lines[1:-1], set(doomed), "sessionId") + refusals_naming(
        alone, set(doomed), "session_id"
    )
    assert stored == len(doomed) + sum(answered.values())  # one refusal each came cloned

    assert baton("verify", database=server.database_url).returncode == 0
    with fresh_database("sqlite", tmp_path / "archive") as archive:
        assert baton("migrate", database=archive).returncode == 0
        imported = baton("import", str(target), database=archive)
        assert imported.returncode == 0, imported.stderr
        assert baton("verify", database=archive).returncode == 0


async def test_replay_on_a_live_database_mends_what_is_wrong_and_holds_no_turn_up(
    live: tuple[AsyncEngine, BatonServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, server = live
    monkeypatch.setattr(projection, "BATCH", 5)  # reading is quicker than pruning
    cloned = await seeded(engine, server)
    wrong = cloned[::40]
    async with engine.begin() as conn:
        await conn.execute(update(sessions).where(sessions.c.session_id.in_(wrong)).values(turn=99))
    counts: list[int] = []
    with (
        TurnLoop(server.url, live_sessions(server.url, LIVE)) as loop,
        RefusalSpam(server.url, cloned[::3]) as spam,
    ):
        await warmed(loop)
        note: Callable[[], None] = lambda: counts.append(loop.turns)  # noqa: E731
        rebuilt = await rebuild_sessions(engine, note)
    assert loop.failures == []
    assert sum(spam.answers.values()) > 0
    # Sessions whose turns and refusals landed meanwhile were never found differing.
    assert rebuilt == Rebuilt(len(cloned) + LIVE, len(wrong))
    assert counts[-1] - counts[0] >= MIN_TURNS, (counts[0], counts[-1])
    print(f"replay: {counts[-1] - counts[0]} turns committed while it ran")
    assert await check_sessions(engine) == []
    assert baton("verify", database=server.database_url).returncode == 0


async def test_the_commands_themselves_run_beside_a_live_server(
    live: tuple[AsyncEngine, BatonServer], tmp_path: Path
) -> None:
    """`baton replay`, `replay --check`, `prune` and `verify` as processes, turns and
    refusals running all along: each succeeds, and the loop never sees an error."""
    engine, server = live
    doomed = await seeded(engine, server)
    database = server.database_url
    with (
        TurnLoop(server.url, live_sessions(server.url, LIVE)) as loop,
        RefusalSpam(server.url, doomed[::5]),
    ):
        await warmed(loop)
        for command in (
            ("replay",),
            ("replay", "--check"),
            ("prune", "--closed-before", "2999-01-01", "--export", str(tmp_path / "p.jsonl")),
            ("verify",),
        ):
            ran = await asyncio.to_thread(baton, *command, database=database)
            assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
    assert loop.failures == []
    assert "rebuilt" in (await asyncio.to_thread(baton, "replay", database=database)).stderr
    left = await rows(
        engine, select(sessions.c.session_id).where(sessions.c.session_id.in_(doomed))
    )
    assert left == []
