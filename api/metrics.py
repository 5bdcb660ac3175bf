"""Process-local counters, served at /metrics in the Prometheus text format.

Requests that never reach the protocol (bad-request, too-large) are not events, so this
is where they are counted (PROTOCOL section 3).
"""

from collections import Counter

from litestar import Litestar
from litestar.datastructures import State


class Metrics:
    def __init__(self) -> None:
        self._errors: Counter[str] = Counter()
        self._turns: Counter[str] = Counter()

    @staticmethod
    def of(app: Litestar) -> "Metrics":
        return Metrics.of_state(app.state)

    @staticmethod
    def of_state(state: State) -> "Metrics":
        metrics: Metrics = state.metrics
        return metrics

    def count_error(self, reason: str) -> None:
        self._errors[reason] += 1

    def count_turn(self, status: str) -> None:
        self._turns[status] += 1

    def render(self) -> str:
        lines = [
            "# HELP baton_errors_total Requests answered with an error, by reason.",
            "# TYPE baton_errors_total counter",
            *(f'baton_errors_total{{reason="{r}"}} {n}' for r, n in sorted(self._errors.items())),
            "# HELP baton_turns_total Turns that ran to an outcome, by status.",
            "# TYPE baton_turns_total counter",
            *(f'baton_turns_total{{status="{s}"}} {n}' for s, n in sorted(self._turns.items())),
        ]
        return "\n".join(lines) + "\n"
