"""Progress lines on stderr, so stdout carries only the final table."""

import sys
import time

_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)
