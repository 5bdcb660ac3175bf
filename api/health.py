"""Liveness, readiness and metrics: what an orchestrator and a scraper ask."""

from typing import Any

from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.exc import SQLAlchemyError

from api.metrics import Metrics
from infra.migrate import current_revision

NOT_READY = "not-ready"


@get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """The process is up (it says nothing about the database)."""
    return {"status": "ok"}


@get("/readyz", tags=["operations"])
async def readyz(state: State) -> Response[dict[str, Any]]:
    """The database answers and its schema is at the head revision this code expects."""
    head: str = state.head_revision
    if not state.gate.is_open:
        return _not_ready("this replica is shutting down")
    try:
        current = await current_revision(state.engine)
    except (SQLAlchemyError, OSError) as error:
        return _not_ready(f"database unreachable: {type(error).__name__}")
    if current != head:
        return _not_ready(f"database schema at revision {current}, this code expects {head}")
    return Response({"status": "ready", "revision": head})


def _not_ready(message: str) -> Response[dict[str, Any]]:
    return Response({"error": message, "reason": NOT_READY}, status_code=503)


@get("/metrics", media_type=MediaType.TEXT, tags=["operations"])
async def metrics_text(metrics: NamedDependency[Metrics]) -> str:
    return metrics.render()
