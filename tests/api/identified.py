"""The turn API's client middleware (api/refusal_limit.py identify_clients), driven directly:
requests from an address go through it to `app`, and whatever it sends is kept in `sent`."""

from types import SimpleNamespace
from typing import Any

from litestar.types import ASGIApp

from baton.api.metrics import Metrics
from baton.api.refusal_limit import RefusalLimiter, identify_clients


class Identified:
    def __init__(self, limiter: RefusalLimiter, app: ASGIApp) -> None:
        self.sent: list[Any] = []
        self._middleware = identify_clients(lambda: limiter)(app)
        # All the middleware reads of the app: its metrics, for the 429 it counts.
        self._app = SimpleNamespace(state=SimpleNamespace(metrics=Metrics()))

    async def request(self, address: str, receive: Any = None) -> None:
        scope: Any = {"type": "http", "client": (address, 1234), "app": self._app}
        await self._middleware(scope, receive, self._send)

    async def _send(self, message: Any) -> None:
        self.sent.append(message)
