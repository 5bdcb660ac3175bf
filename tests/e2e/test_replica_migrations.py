"""Replicas that start at once on one PostgreSQL all migrate, one after another."""

import subprocess
from pathlib import Path

import pytest

from tests.databases import fresh_database
from tests.e2e.server import BATON

pytestmark = pytest.mark.e2e
REPLICAS = 4


def test_replicas_migrating_at_once_all_succeed(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as url:
        migrations = [
            subprocess.Popen(
                [str(BATON), "migrate", "--database-url", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(REPLICAS)
        ]
        outputs = [process.communicate(timeout=60)[0] for process in migrations]
        codes = [process.returncode for process in migrations]
    assert codes == [0] * REPLICAS, outputs
    # Exactly one of them ran the upgrade; the others waited, then found the schema at head.
    assert sum("migrated from empty" in output for output in outputs) == 1, outputs
    assert sum("already at" in output for output in outputs) == REPLICAS - 1, outputs
