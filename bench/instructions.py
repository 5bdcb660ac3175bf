"""`python -m bench.instructions` (`make bench-instructions`): the instructions one request
costs the server, counted by valgrind's callgrind, for a buffered turn on each backend and
for the http-floor's echo request, and their ratios.

Why beside `make bench`: there, a turn's CPU is read from /proc while load runs, and on these
shared 2-core machines that figure moved by 20-40% between runs of the same code (1,067 to
1,370 µs per SQLite turn within one hour), so a change worth a few percent cannot be seen.
callgrind counts the instructions the server process executes in user space: the same code
serving the same requests gives the same count to within about 0.1%, whatever else the
machine does. It does not count the kernel's share (socket and fsync system calls), so it
complements the CPU figures: a change that saves a system call shows in `make bench`, one
that saves Python work shows here.

Each server runs under callgrind (about fifty times slower) and is driven by one client, one
request after another (c1: no batching, the same path every time): a warm-up, then
callgrind's counters are zeroed, `requests` requests are made, and the counters are dumped.
callgrind_control only reaches a process that is executing, so while it waits the harness
sends the server a /healthz now and then; the few that land inside the window are counted
with the requests (each costs a fraction of an echo request: well under 1% of the total at
the default of 200 requests).
"""

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from asyncio.subprocess import DEVNULL
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.clients import EchoClient, RestClient, VirtualClient
from bench.config import RESULTS_DIR
from bench.databases import fresh_postgres, fresh_sqlite_path, migrate, sqlite_url
from bench.http_client import HttpConnection, request_bytes
from bench.measure import OK
from bench.report import run_stamp
from bench.rows import HTTP_FLOOR, POSTGRESQL, SQLITE
from bench.servers import (
    HOST,
    PYTHON,
    ServerProcess,
    baton_serve_args,
    floor_command,
    free_port,
)

REQUESTS = 200
WARMUP = 20
STARTUP_SECONDS = 600.0  # importing Baton alone takes about 40 s under callgrind
PING_SECONDS = 1.0  # callgrind acts on a command at the first ping; more pings only cost
DEFAULT_OUTPUT = RESULTS_DIR / "instructions.json"  # git-ignored; a dated copy is kept


@dataclass(frozen=True, slots=True)
class Count:
    name: str  # "buffered" or the http-floor
    backend: str
    requests: int
    instructions: int

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests


def tools_missing() -> list[str]:
    return [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]


def total_instructions(dump: str) -> int:
    """The instructions a callgrind dump counted (its `totals:` or `summary:` line)."""
    for line in dump.splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError("not a callgrind dump: no totals or summary line")


async def _control(flag: str, pid: int, port: int) -> None:
    """Run `callgrind_control <flag> <pid>`, waking the server until it is done."""
    control = await asyncio.create_subprocess_exec(
        "callgrind_control", flag, str(pid), stdout=DEVNULL, stderr=DEVNULL
    )
    ping = request_bytes("GET", "/healthz", f"{HOST}:{port}", b"")
    connection = HttpConnection(HOST, port)
    await connection.open()
    try:
        while control.returncode is None:
            await connection.request(ping)
            try:
                await asyncio.wait_for(control.wait(), PING_SECONDS)
            except TimeoutError:
                continue
    finally:
        await connection.close()
    if control.returncode != 0:
        raise RuntimeError(f"callgrind_control {flag} {pid} exited {control.returncode}")


async def _drive(client: VirtualClient, pid: int, port: int, requests: int, warmup: int) -> None:
    await client.setup()
    try:
        for measured in (False, True):
            if measured:
                await _control("--zero", pid, port)
            for _ in range(requests if measured else warmup):
                result = await client.turn()
                if result[0] != OK:
                    raise RuntimeError(f"a request under callgrind failed: {result}")
        await _control("--dump", pid, port)
    finally:
        await client.close()


def count(
    name: str,
    backend: str,
    command: list[str],
    client: Callable[[str, int], VirtualClient],
    port: int,
    work_dir: Path,
    requests: int = REQUESTS,
    warmup: int = WARMUP,
) -> Count:
    """Serve `command` (listening on `port`) under callgrind, and count `requests` of
    `client`'s requests."""
    out = work_dir / f"{name}-{backend}.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
    server = ServerProcess(
        f"callgrind-{name}-{backend}",
        [*valgrind, *command],
        port,
        work_dir,
        startup_seconds=STARTUP_SECONDS,
    )
    with server:
        asyncio.run(_drive(client(HOST, port), server.pid, port, requests, warmup))
    dump = Path(f"{out}.1")  # the first dump: what the window counted
    return Count(name, backend, requests, total_instructions(dump.read_text()))


def count_echo(work_dir: Path, requests: int = REQUESTS, warmup: int = WARMUP) -> Count:
    port = free_port()
    return count(HTTP_FLOOR, "-", floor_command(port), EchoClient, port, work_dir, requests, warmup)


def count_turns(backend: str, database_url: str, work_dir: Path, requests: int = REQUESTS) -> Count:
    migrate(database_url)  # here, at full speed: `baton serve` then finds it done
    port = free_port()
    command = [PYTHON, "-m", "baton.api.cli", *baton_serve_args(database_url, port)]
    return count("buffered", backend, command, RestClient, port, work_dir, requests)


def run(requests: int, work_dir: Path) -> list[Count]:
    counts = [count_echo(work_dir, requests)]
    sqlite = sqlite_url(fresh_sqlite_path(work_dir, "callgrind"))
    counts.append(count_turns(SQLITE, sqlite, work_dir, requests))
    with fresh_postgres("callgrind") as database:
        counts.append(count_turns(POSTGRESQL, database.baton_url, work_dir, requests))
    return counts


def table(counts: Sequence[Count]) -> str:
    echo = next(c for c in counts if c.name == HTTP_FLOOR)
    lines = ["| request | backend | requests | instructions per request | ÷ echo |"]
    lines.append("| --- | --- | ---: | ---: | ---: |")
    for c in counts:
        ratio = c.per_request / echo.per_request
        lines.append(
            f"| {c.name} | {c.backend} | {c.requests} | {c.per_request:,.0f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if missing := tools_missing():
        print(f"bench.instructions: {', '.join(missing)} not found (valgrind)", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="baton-callgrind-") as work:
        counts = run(args.requests, Path(work))
    print(table(counts))
    result = {
        "timestamp": started.isoformat(),
        "elapsed_seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "counts": [{**asdict(c), "per_request": round(c.per_request)} for c in counts],
    }
    text = json.dumps(result, indent=2) + "\n"
    # Like make bench: the latest at --output, and a dated copy, committed, that figures
    # in the README can name.
    dated = RESULTS_DIR / f"{run_stamp(started)}-instructions.json"
    for path in (args.output, dated):
        path.write_text(text)
    print(f"\nwritten: {args.output}, {dated}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
