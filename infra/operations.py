"""The operator's commands on one database, read and written directly (no server needed):
replay, verify (and its anchors), export, import and prune, behind one object so that the
CLI holds no engine and meets no driver error (an unreachable database is StoreUnavailable)."""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TextIO

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.ports import StoreUnavailable
from baton.infra.anchor_file import Anchor
from baton.infra.anchors import Finding, check_against, write_anchor
from baton.infra.audit import BrokenLink, verify
from baton.infra.database import create_engine
from baton.infra.export_format import ExportWriter
from baton.infra.projection import Rebuilt, check_sessions, count_session_events, rebuild_sessions
from baton.infra.retention import Pruned, closed_before, prune_sessions
from baton.infra.settings import Settings
from baton.infra.tables import sessions
from baton.infra.transfer import Reader, export_sessions, import_sessions

Progress = Callable[[], None] | None


class Operations:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def count_events(self) -> int:
        return await count_session_events(self._engine)

    async def count_sessions(self) -> int:
        async with self._engine.connect() as conn:
            query = select(func.count()).select_from(sessions)
            return int((await conn.execute(query)).scalar_one())

    async def rebuild(self, on_event: Progress = None) -> Rebuilt:
        return await rebuild_sessions(self._engine, on_event)

    async def check(self, on_event: Progress = None) -> list[str]:
        return await check_sessions(self._engine, on_event)

    async def verify(self, session_ids: Sequence[str] | None) -> list[BrokenLink]:
        return [link async for link in verify(self._engine, session_ids)]

    async def anchor(
        self, out: TextIO, at: datetime, session_ids: Sequence[str] | None
    ) -> tuple[int, str]:
        return await write_anchor(self._engine, out, at, session_ids)

    async def against(self, anchor: Anchor) -> list[Finding]:
        return [found async for found in check_against(self._engine, anchor)]

    async def unknown(self, session_ids: Sequence[str]) -> list[str]:
        """Those of `session_ids` (lower case) that name no session here."""
        query = select(sessions.c.session_id).where(sessions.c.session_id.in_(session_ids))
        async with self._engine.connect() as conn:
            known = {str(value) for value in (await conn.execute(query)).scalars()}
        return [session_id for session_id in session_ids if session_id not in known]

    async def export(self, out: TextIO, session_ids: Sequence[str] | None) -> int:
        return await export_sessions(self._engine, out, session_ids)

    async def import_lines(self, read: Reader) -> tuple[int, int]:
        return await import_sessions(self._engine, read)

    async def closed_before(self, before: datetime) -> list[str]:
        return await closed_before(self._engine, before)

    async def prune(
        self, session_ids: list[str], before: datetime, at: datetime, out: ExportWriter | None
    ) -> Pruned:
        return await prune_sessions(self._engine, session_ids, before, at, out)


@asynccontextmanager
async def operations(settings: Settings) -> AsyncIterator[Operations]:
    """The operations on `settings.database_url`; a database that cannot be opened or
    reached is StoreUnavailable, with the driver's own words."""
    engine = create_engine(settings)
    try:
        yield Operations(engine)
    except (SQLAlchemyError, OSError) as error:
        reason = getattr(error, "orig", None) or error
        raise StoreUnavailable(f"{type(reason).__name__}: {reason}") from error
    finally:
        await engine.dispose()
