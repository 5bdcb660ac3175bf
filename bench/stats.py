"""Latency percentiles and the counters every measurement reports."""

import math
from collections import Counter
from collections.abc import Sequence


def percentile_ms(latencies_seconds: Sequence[float], percent: float) -> float | None:
    """The nearest-rank percentile, in milliseconds; None when nothing was measured."""
    if not latencies_seconds:
        return None
    ordered = sorted(latencies_seconds)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1] * 1000


def summarize_latency(latencies_seconds: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50_ms": percentile_ms(latencies_seconds, 50),
        "p99_ms": percentile_ms(latencies_seconds, 99),
    }


def counts(counter: Counter[str]) -> dict[str, int]:
    """A counter as a plain, sorted dict (stable JSON, readable tables)."""
    return dict(sorted(counter.items()))
