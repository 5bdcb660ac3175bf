"""The chaos run in its short form (`make chaos` runs the long one): replicas killed under
load, clients that replay and race, and an audit that finds nothing wrong."""

import pytest

from tests.databases import require_postgres
from tests.e2e.chaos import run

pytestmark = pytest.mark.e2e


async def test_a_short_chaos_run_passes_the_audit(capsys: pytest.CaptureFixture[str]) -> None:
    require_postgres()
    problems = await run(seconds=18, session_count=200, workers=12, kill_every=2.5)
    report = capsys.readouterr().out
    assert problems == 0, report
    kills = int(report.split("replica kills survived: ")[1].split()[0])
    assert kills >= 2, report  # the run really was chaotic
