"""The measured window and what is counted in it, shared by every load-generator workload.

A scenario runs a warm-up, then a window of fixed length. A request counts towards the rate
and the latencies when it completes inside the window; refusals and errors are counted
whenever they happen, warm-up included, so that nothing wrong hides in an unmeasured second.
"""

import asyncio
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import counts, summarize_latency

clock = time.perf_counter

OK = "ok"
REFUSED = "refused"
ERROR = "error"
Result = tuple[str, str]  # (OK | REFUSED | ERROR, detail: a refusal reason or an error kind)
COMMITTED: Result = (OK, "")


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads, user plus system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (pgbench, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU time so far of a process and of its live descendants (a server's workers), user
    plus system, from /proc: how the server under test spends its CPU, read from outside."""
    proc = Path(f"/proc/{pid}")
    try:
        # Fields after the command (which is in parentheses and may hold spaces).
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in (proc / "task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # gone meanwhile: its time is no longer anyone's
    own = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return own + sum(process_tree_cpu_seconds(child) for child in children)


@dataclass
class Window:
    warmup_seconds: float
    measure_seconds: float
    server_pid: int | None = None  # the server under test, whose CPU the window also samples
    server_cpu_at_start: float = 0.0
    server_cpu_at_end: float = 0.0
    start: float = 0.0
    end: float = 0.0
    cpu_at_start: float = 0.0
    cpu_at_end: float = 0.0
    wall_at_start: float = 0.0
    wall_at_end: float = 0.0

    def open(self) -> None:
        """Start the warm-up now; the window follows it. The load generator's CPU share is
        sampled at the window's edges by the event loop itself."""
        self.start = clock() + self.warmup_seconds
        self.end = self.start + self.measure_seconds
        loop = asyncio.get_running_loop()
        loop.call_later(self.warmup_seconds, self._sample_start)
        loop.call_later(self.warmup_seconds + self.measure_seconds, self._sample_end)

    def _sample_start(self) -> None:
        self.wall_at_start, self.cpu_at_start = clock(), cpu_seconds()
        if self.server_pid is not None:
            self.server_cpu_at_start = process_tree_cpu_seconds(self.server_pid)

    def _sample_end(self) -> None:
        self.wall_at_end, self.cpu_at_end = clock(), cpu_seconds()
        if self.server_pid is not None:
            self.server_cpu_at_end = process_tree_cpu_seconds(self.server_pid)

    def close(self) -> None:
        """After the load stopped: take the end sample now if the timer has not yet."""
        if not self.wall_at_end:
            self._sample_end()

    def cpu_share(self) -> float | None:
        wall = self.wall_at_end - self.wall_at_start
        return (self.cpu_at_end - self.cpu_at_start) / wall if wall > 0 else None

    def server_cpu_seconds(self) -> float | None:
        """The server's CPU time spent in the window (None: no server was named)."""
        if self.server_pid is None:
            return None
        return self.server_cpu_at_end - self.server_cpu_at_start


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, result: Result, began: float, ended: float, window: Window) -> None:
        kind, detail = result
        if kind == OK:
            if window.start <= ended <= window.end:
                self.latencies.append(ended - began)
        elif kind == REFUSED:
            self.refusals[detail] += 1
        else:
            self.errors[detail] += 1

    def summary(self, window: Window, unit: str) -> dict[str, Any]:
        return {
            "rate": len(self.latencies) / window.measure_seconds,
            "unit": unit,
            "count": len(self.latencies),
            **summarize_latency(self.latencies),
            "refusals": counts(self.refusals),
            "errors": counts(self.errors),
            "loadgen_cpu": window.cpu_share(),
            "server_cpu_seconds": window.server_cpu_seconds(),
        }
