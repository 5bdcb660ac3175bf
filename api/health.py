"""Liveness, readiness and metrics: what an orchestrator and a scraper ask."""

from typing import Any

from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency

from baton.api.metrics import Metrics
from baton.domain.ports import StoreUnavailable
from baton.infra.history import SessionReader

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
    reader: SessionReader = state.reader
    try:
        current = await reader.schema_revision()
    except StoreUnavailable:
        return _not_ready("database unreachable")
    if current != head:
        return _not_ready(f"database schema at revision {current}, this code expects {head}")
    return Response({"status": "ready", "revision": head})


def _not_ready(message: str) -> Response[dict[str, Any]]:
    return Response({"error": message, "reason": NOT_READY}, status_code=503)


@get("/metrics", media_type=MediaType.TEXT, tags=["operations"])
async def metrics_text(metrics: NamedDependency[Metrics]) -> Response[bytes]:
    """Prometheus text exposition: every worker's, with PROMETHEUS_MULTIPROC_DIR set."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
