"""baton-chat: a terminal chat with Baton's demo handler (input {"message": text}).

    baton-chat http://127.0.0.1:8787            # a new conversation
    baton-chat http://127.0.0.1:8787 --resume   # carry on with the last one

Replies stream in word by word. The session (its id and current token, nothing else) is kept
in a token file, ~/.baton/chat-session.json by default (--state), so --resume picks it up
after the chat, the machine or the server restarts; while the server is down or restarting,
the client retries the turn with the same key and token until it answers. Needs rich
(`pip install 'baton-client[chat]'`).
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from baton_client.errors import BatonError, NoSession
from baton_client.models import Delta, Outcome
from baton_client.retry import RetryPolicy
from baton_client.store import FileTokenStore
from baton_client.sync import Client, Session

DEFAULT_STATE = Path("~/.baton/chat-session.json")
# Long enough to outlast a server restart; a turn gives up after two minutes of trying.
PATIENT = RetryPolicy(max_attempts=60, deadline=120.0, max_delay=2.0)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="baton-chat", description="A terminal chat with Baton's demo handler."
    )
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8787", help="Baton's URL")
    parser.add_argument("--resume", action="store_true", help="continue the last conversation")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="the token file")
    return parser.parse_args(argv)


def _reply(console: Console, session: Session, text: str) -> None:
    """One turn: the deltas as they arrive; the reply's missing part if some were lost."""
    console.print("[bold green]baton[/] ", end="")
    shown = ""
    for event in session.stream({"message": text}):
        if isinstance(event, Delta):
            console.print(event.text, end="", markup=False, highlight=False)
            shown += event.text
        elif isinstance(event, Outcome):
            output = event.output if isinstance(event.output, dict) else {}
            reply = str(output.get("reply", "")) if event.status == "finished" else event.status
            rest = reply[len(shown) :] if reply.startswith(shown) else f"\n{reply}"
            console.print(rest, markup=False, highlight=False, end="")
            console.print(f"  [dim](turn {event.turn})[/]")


def chat(console: Console, session: Session) -> None:
    while True:
        try:
            text = console.input("[bold cyan]you[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if text in ("/quit", "/exit"):
            return
        if not text:
            continue
        try:
            _reply(console, session, text)
        except BatonError as error:
            console.print(f"\n[red]{error.reason}[/]: {error.message}", highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    console = Console()
    store = FileTokenStore(arguments.state)
    with Client(arguments.url, retry=PATIENT) as client:
        if arguments.resume:
            try:
                session = client.resume(store)
            except NoSession:
                console.print(f"[red]no conversation to resume in {store.path}[/]")
                return 1
        else:  # a new conversation: it replaces the saved one at its first turn
            session = client.session(store, fresh=True)
        console.print(
            f"[dim]{_banner(session, store)}; /quit or Ctrl-D to leave[/]", soft_wrap=True
        )
        chat(console, session)
    if session.started:
        console.print(f"[dim]saved in {store.path}; carry on with --resume[/]", soft_wrap=True)
    return 0


def _banner(session: Session, store: FileTokenStore) -> str:
    if session.session_id is None:
        return "a new conversation"
    return f"session {session.session_id} (from {store.path})"
