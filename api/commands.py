"""The operator's commands: replay, verify, export, import and prune.

Each reads the database named by the settings directly (no server needed) and returns
the process's exit status: 0 when all is well, 1 when it found or refused something.
"""

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from infra.operations import Operations, operations
from infra.settings import Settings
from infra.transfer import ImportRefused

_progress_console = Console(stderr=True)


def _say(message: str) -> None:
    """A line on stderr, as written (rich would wrap it and read brackets as markup)."""
    print(message, file=sys.stderr)


T = TypeVar("T")


def _with_operations(settings: Settings, work: Callable[[Operations], Awaitable[T]]) -> T:
    async def run() -> T:
        async with operations(settings) as ops:
            return await work(ops)

    return asyncio.run(run())


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr; yields the per-event callback that advances it."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_progress_console) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


def replay(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild every projection from the events alone (--check: compare, change nothing)."""

    async def run(ops: Operations) -> int:
        total = await ops.count_events()
        if args.check:
            with _progress("checking the projection", total) as advance:
                differing = await ops.check(advance)
            for session_id in differing:
                print(f"projection differs from its events: session {session_id}")
            _say(f"{len(differing)} session(s) differ" if differing else "projection ok")
            return 1 if differing else 0
        with _progress("rebuilding the projection", total) as advance:
            rebuilt = await ops.rebuild(advance)
        _say(f"rebuilt {rebuilt} session(s) from {total} event(s)")
        return 0

    return _with_operations(settings, run)


def verify_chains(settings: Settings, args: argparse.Namespace) -> int:
    """Recompute the hash chains; name each session's first broken link."""

    async def run(ops: Operations) -> int:
        session_ids = args.session_ids or None
        broken = await ops.verify(session_ids)
        for link in broken:
            print(f"broken: {link}")
        checked = len(session_ids) if session_ids else await ops.count_sessions()
        if broken:
            _say(f"{len(broken)} broken chain(s) in {checked} session(s)")
            return 1
        _say(f"all chains hold ({checked} session(s))")
        return 0

    return _with_operations(settings, run)


def export(settings: Settings, args: argparse.Namespace) -> int:
    """Write sessions' events, with their hashes, as JSON lines."""
    session_ids = [session_id.lower() for session_id in args.session_ids] or None
    if session_ids:
        unknown = _with_operations(settings, lambda ops: ops.unknown(session_ids))
        if unknown:
            _say(f"baton: error: unknown session(s): {', '.join(unknown)}")
            return 1
    with _output(args.output) as out:
        written = _with_operations(settings, lambda ops: ops.export(out, session_ids))
    _say(f"exported {written} event(s)")
    return 0


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with Path(path).open("w", encoding="utf-8") as out:
        yield out


def import_file(settings: Settings, args: argparse.Namespace) -> int:
    """Import an export after checking every chain in it."""
    path = Path(args.file)
    if not path.is_file():
        _say(f"baton: error: no such file: {path}")
        return 1

    async def run(ops: Operations) -> int:
        try:
            imported, events = await ops.import_lines(lambda: _lines(path))
        except ImportRefused as refused:
            _say(f"baton: import refused: {refused}")
            return 1
        _say(f"imported {imported} session(s), {events} event(s)")
        return 0

    return _with_operations(settings, run)


@contextmanager
def _lines(path: Path) -> Iterator[TextIO]:
    with path.open(encoding="utf-8") as lines:
        yield lines


def _cutoff(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def prune(settings: Settings, args: argparse.Namespace) -> int:
    """Remove sessions closed before a date, exporting them first unless told not to."""
    doomed = _with_operations(settings, lambda ops: ops.closed_before(args.closed_before))
    if not doomed:
        _say("no closed sessions to prune")
        return 0
    if not args.no_export:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = args.export or f"baton-pruned-{stamp}.jsonl"
        with _output(target) as out:
            _with_operations(settings, lambda ops: ops.export(out, doomed))
        _say(f"exported {len(doomed)} session(s) to {target}")
    removed = _with_operations(settings, lambda ops: ops.remove(doomed))
    _say(f"pruned {len(doomed)} closed session(s), {removed} event(s)")
    return 0


def add_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> list[argparse.ArgumentParser]:
    """The operator's subcommands; returns their parsers, which take --database-url too."""
    replaying = commands.add_parser("replay", help="rebuild every projection from the events")
    replaying.add_argument(
        "--check", action="store_true", help="compare with a rebuild; change nothing"
    )
    replaying.set_defaults(run=replay)

    verifying = commands.add_parser("verify", help="recompute the hash chains")
    verifying.add_argument("session_ids", nargs="*", metavar="SESSION_ID")
    verifying.set_defaults(run=verify_chains)

    exporting = commands.add_parser("export", help="write sessions' events as JSON lines")
    exporting.add_argument("session_ids", nargs="*", metavar="SESSION_ID")
    exporting.add_argument("--output", "-o", help="a file instead of standard output")
    exporting.set_defaults(run=export)

    importing = commands.add_parser("import", help="import an export into this database")
    importing.add_argument("file", metavar="FILE")
    importing.set_defaults(run=import_file)

    pruning = commands.add_parser("prune", help="remove closed sessions")
    pruning.add_argument("--closed-before", type=_cutoff, required=True, metavar="DATE")
    keeping = pruning.add_mutually_exclusive_group()
    keeping.add_argument("--export", metavar="FILE", help="where to export them first")
    keeping.add_argument("--no-export", action="store_true", help="remove without exporting")
    pruning.set_defaults(run=prune)
    return [replaying, verifying, exporting, importing, pruning]
