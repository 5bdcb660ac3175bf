"""The server's CPU as the bench reads it from /proc: its own and its workers'."""

import subprocess
import sys
import time

from bench.measure import process_tree_cpu_seconds

SPIN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
PARENT = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {SPIN!r}])\n"
    "time.sleep(5)\n"
)


def test_a_process_trees_cpu_counts_its_live_children() -> None:
    """A parent that only sleeps, with a child that spins for 0.4 s of CPU: the tree spent
    about 0.4 s (the parent's own start-up is a few tens of milliseconds)."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT])
    try:
        time.sleep(1.5)  # the child has spun and sleeps no more than it has to
        spent = process_tree_cpu_seconds(parent.pid)
        assert 0.35 <= spent <= 1.2, spent
    finally:
        parent.kill()
        parent.wait()
    assert process_tree_cpu_seconds(parent.pid) == 0.0  # gone: nobody's time
