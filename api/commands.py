"""The operator's commands: replay, verify (and anchors), export, import and prune.

Each reads the database named by the settings directly (no server needed) and returns
the process's exit status: 0 when all is well, 1 when it found or refused something, 2
when it could not look (an anchor file it cannot read).
"""

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from baton.infra.anchor_file import Anchor, AnchorRefused, read_anchor
from baton.infra.export_format import ExportWriter
from baton.infra.operations import Operations, operations
from baton.infra.retention import PruneStopped
from baton.infra.settings import Settings
from baton.infra.transfer import ImportRefused

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
        _say(
            f"rebuilt {rebuilt.sessions} session(s) from {total} event(s);"
            f" {rebuilt.rewritten} row(s) differed and were rewritten"
        )
        return 0

    return _with_operations(settings, run)


def verify_chains(settings: Settings, args: argparse.Namespace) -> int:
    """Recompute the hash chains; name each session's first broken link. --anchor: then
    write every chain head to a file; --against: check the chains still pass through a
    file's heads."""
    anchor = None
    if args.against is not None:
        try:
            anchor = read_anchor(Path(args.against).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, AnchorRefused) as error:
            _say(f"baton: error: anchor {args.against}: {error}")
            return 2
    session_ids = args.session_ids or None
    status = _with_operations(settings, lambda ops: _verify(ops, session_ids))
    if anchor is not None:
        return max(status, _with_operations(settings, lambda ops: _against(ops, anchor)))
    if args.anchor is not None:
        if status:
            _say("baton: no anchor written: an anchor vouches for the chains it names")
            return status
        _anchor(settings, args.anchor, session_ids)
    return status


async def _verify(ops: Operations, session_ids: list[str] | None) -> int:
    broken = await ops.verify(session_ids)
    for link in broken:
        print(f"broken: {link}")
    checked = len(session_ids) if session_ids else await ops.count_sessions()
    if broken:
        _say(f"{len(broken)} broken chain(s) in {checked} session(s)")
        return 1
    _say(f"all chains hold ({checked} session(s))")
    return 0


def _anchor(settings: Settings, path: str, session_ids: list[str] | None) -> None:
    at = datetime.now(UTC)
    with Path(path).open("w", encoding="utf-8") as out:
        count, digest = _with_operations(settings, lambda ops: ops.anchor(out, at, session_ids))
    print(f"anchor digest {digest}")
    _say(f"anchored {count} session(s) in {path}: keep it (or its digest) off this host")


async def _against(ops: Operations, anchor: Anchor) -> int:
    findings = await ops.against(anchor)
    for found in findings:
        print(f"{'pruned' if found.pruned else 'anchor'}: {found}")
    problems = sum(not found.pruned for found in findings)
    if problems:
        _say(f"{problems} session(s) do not extend the anchor written {anchor.written_at}")
        return 1
    _say(f"all {len(anchor.entries)} anchored session(s) extend the anchor")
    return 0


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
def _lines(path: Path) -> Iterator[BinaryIO]:
    with path.open("rb") as lines:  # decoded line by line: a bad byte is refused by line
        yield lines


def _cutoff(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def prune(settings: Settings, args: argparse.Namespace) -> int:
    """Remove sessions closed before a date, a batch at a time, each batch exported before
    its events go unless told not to."""
    before = args.closed_before
    doomed = _with_operations(settings, lambda ops: ops.closed_before(before))
    if not doomed:
        _say("no closed sessions to prune")
        return 0
    target = None
    if not args.no_export:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = args.export or f"baton-pruned-{stamp}.jsonl"
    try:
        with _export(target) as writer:
            at = datetime.now(UTC)
            pruned = _with_operations(settings, lambda ops: ops.prune(doomed, before, at, writer))
    except PruneStopped as stopped:
        _say(f"baton: prune stopped: {stopped}")
        return 1
    if target is not None:
        _say(f"exported {pruned.sessions} session(s) to {target}")
    _say(f"pruned {pruned.sessions} closed session(s), {pruned.events} event(s)")
    return 0


@contextmanager
def _export(path: str | None) -> Iterator[ExportWriter | None]:
    """The export prune writes as it goes; it ends with its end line even if prune stops."""
    if path is None:
        yield None
        return
    with _output(path) as out:
        writer = ExportWriter(out)
        try:
            yield writer
        finally:
            writer.end()


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
    anchoring = verifying.add_mutually_exclusive_group()
    anchoring.add_argument("--anchor", metavar="FILE", help="then write every chain head here")
    anchoring.add_argument(
        "--against", metavar="FILE", help="check the chains still pass through FILE's heads"
    )
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
