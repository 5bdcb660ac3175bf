"""bench/instructions.py: callgrind's count of what one request costs the server."""

from pathlib import Path

import pytest

from bench.instructions import Count, count_echo, table, tools_missing, total_instructions
from tests.databases import IN_CI

DUMP = """# callgrind format
version: 1
events: Ir
summary: 12345678

fn=(1) main
0 12345678
"""


def test_a_dump_is_read_for_its_total() -> None:
    assert total_instructions(DUMP) == 12_345_678
    assert total_instructions(DUMP.replace("summary:", "totals:")) == 12_345_678
    with pytest.raises(ValueError, match="not a callgrind dump"):
        total_instructions("events: Ir\n")


def test_the_table_gives_each_request_against_the_echo() -> None:
    printed = table(
        [Count("http-floor", "-", 10, 4_000_000), Count("buffered", "sqlite", 10, 12_000_000)]
    )
    assert "| http-floor | - | 10 | 400,000 | 1.00 |" in printed
    assert "| buffered | sqlite | 10 | 1,200,000 | 3.00 |" in printed


@pytest.mark.e2e
def test_an_echo_request_is_counted_under_callgrind(tmp_path: Path) -> None:
    """The real thing, short: the http-floor under valgrind, a few requests counted. An echo
    request runs a few hundred thousand instructions (378,000 when this was written); the
    bounds only catch a count that is not one request's (zero, or the whole start-up)."""
    if missing := tools_missing():
        message = f"{', '.join(missing)} not installed (.ci/system-packages installs valgrind)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    counted = count_echo(tmp_path, requests=12, warmup=3)
    assert counted.requests == 12
    assert 100_000 < counted.per_request < 3_000_000
