"""The flood scenario's pieces (bench/flood.py), without a server: which of the owner's turns
count as alone and which as flooded, what the flood sends, and that the flooder really is
another client (another source address) to a server on 127.0.0.1. The whole scenario runs in
the benchmark's smoke run (tests/test_bench.py)."""

import asyncio
from typing import Any

import pytest

from bench import rows
from bench.config import (
    FLOOD_CONCURRENCY,
    FLOOD_REFUSAL_LIMIT,
    FLOOD_REFUSAL_PACE,
    FLOOD_REFUSAL_WINDOW,
    MODES,
    QUICK,
)
from bench.flood import (
    FLOOD_SOURCE,
    FLOOD_TIMEOUT_SECONDS,
    flood_row,
    junk_continues,
    refusal_limit_env,
)
from bench.http_client import HttpConnection

# The owner's window opens at 10.0; the flood runs from 12.0 to 14.0 (seconds on one clock).
WINDOW_START, FLOOD_START, FLOOD_END = 10.0, 12.0, 14.0
FLOOD = {
    "started": FLOOD_START,
    "ended": FLOOD_END,
    "seconds": FLOOD_END - FLOOD_START,
    "answers": {"409 stale-token": 150, "429 too-many-refusals": 9_850},
    "errors": {},
    "cpu": 0.25,
}


def _row(turns: list[tuple[float, float]], flood: dict[str, Any] | None = None) -> rows.Row:
    owner = {"turns": turns, "refusals": {}, "errors": {}, "cpu": 0.05}
    return flood_row(
        "sqlite",
        owner,
        flood or FLOOD,
        window_start=WINDOW_START,
        requests=10_000,
        stored=150,
    )


def test_owner_turns_are_alone_in_the_window_and_flooded_when_they_began_in_the_flood() -> None:
    turns = [
        (9.9, 9.902),  # warm-up: before the window
        (10.0, 10.001),  # alone (1 ms)
        (11.0, 11.003),  # alone (3 ms)
        (11.999, 12.01),  # ended after the flood began: neither
        (12.0, 12.004),  # flooded (4 ms)
        (13.0, 13.006),  # flooded (6 ms)
        (13.999, 14.02),  # began in the flood, ended after it: flooded (21 ms)
        (14.0, 14.001),  # after the flood: neither
    ]
    row = _row(turns)
    assert row.key == (rows.FLOOD, "sqlite", 1)
    assert row.extra["unflooded_count"] == 2
    assert row.extra["unflooded_p50_ms"] == pytest.approx(1.0)
    assert row.count == 3
    assert row.p50_ms == pytest.approx(6.0)
    assert row.p99_ms == pytest.approx(21.0)
    assert row.rate == pytest.approx(3 / 2.0)


def test_the_row_keeps_what_the_goals_judge() -> None:
    row = _row([(10.0, 10.001), (12.5, 12.502)])
    assert row.extra["flood_answered"] == 10_000
    assert row.extra["flood_requests"] == 10_000
    assert row.extra["flood_seconds"] == 2.0
    assert row.extra["flood_concurrency"] == FLOOD_CONCURRENCY
    assert row.extra["refusal_limit"] == FLOOD_REFUSAL_LIMIT
    assert row.extra["refusal_window_seconds"] == FLOOD_REFUSAL_WINDOW
    assert row.extra["refusal_pace"] == FLOOD_REFUSAL_PACE
    assert row.extra["refusals_stored"] == 150
    assert row.loadgen_cpu == 0.25  # the flooder's: the load
    assert "409 x150, 429 x9850" in "; ".join(row.notes)


def test_a_flood_without_owner_turns_has_no_p50() -> None:
    row = _row([])
    assert (row.p50_ms, row.extra["unflooded_p50_ms"], row.rate) == (None, None, 0.0)


def test_the_server_gets_the_limit_as_its_settings() -> None:
    assert refusal_limit_env() == {
        "BATON_REFUSAL_LIMIT": str(FLOOD_REFUSAL_LIMIT),
        "BATON_REFUSAL_WINDOW": str(FLOOD_REFUSAL_WINDOW),
        "BATON_REFUSAL_PACE": str(FLOOD_REFUSAL_PACE),
    }


def test_the_paced_flood_still_spans_several_windows_and_ends_well_within_its_timeout() -> None:
    """The pace sets how long a flood lasts (requests / pace, at least): long enough in a
    measured run that each new window's budget is tested, short enough for the timeout, and
    a smoke run's no longer than before the pace."""
    seconds = {config.mode: config.flood_requests / FLOOD_REFUSAL_PACE for config in MODES.values()}
    assert seconds["quick"] >= 5 * FLOOD_REFUSAL_WINDOW
    assert seconds["full"] * 4 <= FLOOD_TIMEOUT_SECONDS
    assert seconds["smoke"] <= 0.5
    assert QUICK.flood_requests == 10_000  # issue 13's flood, in every measured run


def test_every_junk_continue_presents_a_token_of_its_own_at_the_session() -> None:
    session_id = "0190b6a4-0000-7000-8000-000000000000"
    junk = junk_continues(session_id, "127.0.0.1:8787", 100)
    assert len(junk) == len(set(junk)) == 100
    for request in junk:
        head = request.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith(f"POST /v1/session/{session_id}/message HTTP/1.1")
        token = next(line for line in head.split("\r\n") if line.startswith("X-Continuation"))
        assert len(token.split(": ", 1)[1]) == 43  # 256 bits, URL-safe base64, unpadded


def test_the_flooder_connects_from_its_own_address() -> None:
    """The refusal limit tells clients apart by source address: the flooder's connections
    must come from FLOOD_SOURCE, the owner's from 127.0.0.1."""

    async def peers() -> list[str]:
        seen: asyncio.Queue[str] = asyncio.Queue()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.put_nowait(writer.get_extra_info("peername")[0])
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            found = []
            for source in (FLOOD_SOURCE, None):
                connection = HttpConnection("127.0.0.1", port, source=source)
                await connection.open()
                found.append(await asyncio.wait_for(seen.get(), 5))
                await connection.close()
        return found

    assert asyncio.run(peers()) == [FLOOD_SOURCE, "127.0.0.1"]
