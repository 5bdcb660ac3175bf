"""The race: N concurrent continues presenting the same valid token, round after round.

PROTOCOL section 2: of N concurrent requests presenting the same valid token exactly one
claims; every other one is refused `in-flight` (or `stale-token` once the winner committed).
Each round must therefore give exactly one 200 and N-1 409s. The winner's new token opens the
next round; a round that went wrong starts a fresh session so the next one is fair.
"""

import asyncio
from collections import Counter
from typing import Any

from bench.clients import START_PATH, TOKEN_HEADER, TURN_BODY, judge
from bench.http_client import HttpConnection, request_bytes
from bench.measure import ERROR, OK, REFUSED, clock, cpu_seconds
from bench.stats import counts, summarize_latency
from bench.wire import WireObject, decode_wire

CONFLICT = 409


class RaceSetupFailed(Exception):
    """The race could not start a session to race on."""


async def _timed(connection: HttpConnection, request: bytes) -> tuple[int, WireObject, float]:
    began = clock()
    response = await connection.request(request)
    return response.status, decode_wire(response.body), clock() - began


async def _start_session(connection: HttpConnection) -> tuple[str, str]:
    start = request_bytes("POST", START_PATH, connection.authority, TURN_BODY)
    response = await connection.request(start)
    reply = decode_wire(response.body)
    if response.status != 200 or not reply.session_id or not reply.continuation_token:
        raise RaceSetupFailed(f"start answered {response.status} {reply.reason}")
    return reply.session_id, reply.continuation_token


async def run_race(host: str, port: int, width: int, rounds: int) -> dict[str, Any]:
    connections = [HttpConnection(host, port) for _ in range(width)]
    await asyncio.gather(*(connection.open() for connection in connections))
    try:
        return await _rounds(connections, rounds)
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))


async def _rounds(connections: list[HttpConnection], rounds: int) -> dict[str, Any]:
    session_id, token = await _start_session(connections[0])
    winners_per_round: list[int] = []
    conflicts_per_round: list[int] = []
    latencies: list[float] = []
    refusals: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    racing_seconds = 0.0
    cpu_before = cpu_seconds()
    for _ in range(rounds):
        path = f"{START_PATH}/{session_id}/message"
        request = request_bytes(
            "POST", path, connections[0].authority, TURN_BODY, ((TOKEN_HEADER, token),)
        )
        began = clock()
        # Every request is written before any reply is read: the burst reaches the server
        # as one, and the single-claim rule alone decides who wins.
        replies = await asyncio.gather(*(_timed(c, request) for c in connections))
        racing_seconds += clock() - began
        tokens = []
        conflicts = 0
        for status, reply, latency in replies:
            latencies.append(latency)
            kind, detail = judge(status, reply)
            if kind == OK:
                tokens.append(reply.continuation_token or "")
            elif kind == REFUSED:
                refusals[detail] += 1
                conflicts += status == CONFLICT
            elif kind == ERROR:
                errors[detail] += 1
        winners_per_round.append(len(tokens))
        conflicts_per_round.append(conflicts)
        if len(tokens) == 1:
            token = tokens[0]
        else:  # the round broke the rule; race the next one on a fresh session
            session_id, token = await _start_session(connections[0])
    cpu = cpu_seconds() - cpu_before
    width = len(connections)
    exact = [
        winners == 1 and conflicts == width - 1
        for winners, conflicts in zip(winners_per_round, conflicts_per_round, strict=True)
    ]
    return {
        # A round is one committed turn and `width` requests; requests/s is the load.
        "rate": len(latencies) / racing_seconds if racing_seconds else 0.0,
        "unit": "req/s",
        "count": len(latencies),
        **summarize_latency(latencies),
        "refusals": counts(refusals),
        "errors": counts(errors),
        "loadgen_cpu": cpu / racing_seconds if racing_seconds else None,
        "race": {
            "width": width,
            "rounds": len(winners_per_round),
            "winners_per_round": winners_per_round,
            "conflicts_per_round": conflicts_per_round,
            "exact_rounds": sum(exact),
            "all_exact": all(exact),
        },
    }
