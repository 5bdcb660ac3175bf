"""The `baton` command: `baton serve` and `baton migrate`."""

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from dataclasses import fields

from baton.api.app import create_app
from baton.api.commands import add_commands
from baton.api.handlers import HandlerNotFound
from baton.api.history_cli import add_history_arguments, print_history
from baton.api.serving import run_server
from baton.api.workers import run_workers, worker_count
from baton.domain.ports import StoreUnavailable
from baton.infra.migrate import head_revision, migrate
from baton.infra.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baton", description="Durable, replay-safe HTTP sessions."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database to head, then serve")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8787)")
    serve.add_argument(
        "--handler",
        help="turn handler: module:attribute, 'demo' (the default) or 'bench' (answers at once)",
    )
    serve.add_argument(
        "--turn-timeout",
        type=float,
        help="seconds a turn may run before it is cancelled and released (default 300)",
    )
    serve.add_argument(
        "--lease",
        dest="lease_seconds",
        type=float,
        help="seconds a claim holds without renewal: how soon a dead replica's session can "
        "be taken over (default: the shorter of 30 and the turn timeout)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds running turns get to finish after SIGTERM (default 30)",
    )
    serve.add_argument(
        "--max-turns",
        type=int,
        help="turns this process runs at once; beyond, 503 with Retry-After (default 1000)",
    )
    serve.add_argument(
        "--no-websockets",
        dest="websockets",
        action="store_const",
        const=False,
        help="serve no WebSockets: /v1/ws answers 426",
    )
    serve.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the chat page at / (default: with the demo handler only)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes on one socket (default: one per core on PostgreSQL; "
        "SQLite serves with one)",
    )
    _database_option(serve)
    serve.set_defaults(run=lambda settings, _: _serve(settings))

    migrate = commands.add_parser("migrate", help="upgrade the database schema to head")
    _database_option(migrate)
    migrate.set_defaults(run=lambda settings, _: asyncio.run(_migrate(settings)))

    for operator in add_commands(commands):
        _database_option(operator)

    chat = commands.add_parser(
        "chat",
        add_help=False,  # --help is the chat's own
        help="chat with the demo handler at a URL: baton-chat, from baton-client[chat]",
    )
    chat.add_argument("arguments", nargs=argparse.REMAINDER)
    chat.set_defaults(run=lambda _, args: _chat(args.arguments))

    history = commands.add_parser("history", help="print a session's stored events")
    add_history_arguments(history)
    _database_option(history)
    history.set_defaults(run=print_history)
    return parser


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL (also BATON_DATABASE_URL; default sqlite+aiosqlite:///./baton.db)",
    )


async def _migrate(settings: Settings) -> None:
    before = await migrate(settings)
    head = head_revision()
    if before == head:
        print(f"baton: database schema already at {head}", file=sys.stderr)
    else:
        print(
            f"baton: database schema migrated from {before or 'empty'} to {head}", file=sys.stderr
        )


def _chat(arguments: list[str]) -> int:
    """`baton chat` is baton-chat, which lives in the client distribution: a chat is a
    client, and a user chatting with a remote Baton needs no server installed."""
    try:
        chat = importlib.import_module("baton_client.chat")
    except ImportError:
        print("baton: error: baton chat needs pip install 'baton-client[chat]'", file=sys.stderr)
        return 2
    status: int = chat.main(arguments)
    return status


def _serve(settings: Settings) -> None:
    workers = worker_count(settings)
    app = create_app(settings)  # a bad --handler fails here, once, before any worker starts
    asyncio.run(_migrate(settings))  # once, before any worker serves
    if workers == 1:
        run_server(app, settings)
    else:
        print(f"baton: serving with {workers} worker processes", file=sys.stderr)
        run_workers(settings, workers)


SETTINGS = {field.name for field in fields(Settings)}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Flags named like a setting override it; the rest are the command's own arguments.
    overrides = {key: value for key, value in vars(args).items() if key in SETTINGS}
    try:
        settings = Settings.from_env(**overrides)
        status: int | None = args.run(settings, args)
    except (SettingsError, HandlerNotFound) as error:
        print(f"baton: error: {error}", file=sys.stderr)
        return 2
    except StoreUnavailable as error:
        # A database that cannot be opened or reached: say so in a line, not a traceback.
        print(f"baton: error: the database: {error}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
