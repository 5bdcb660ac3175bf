"""baton-client: durable, replay-safe Baton sessions from Python.

    from baton_client import Client, FileTokenStore

    with Client("http://127.0.0.1:8787") as client:
        session = client.start({"message": "hello"}, store=FileTokenStore("session.json"))
        print(session.outcome.output)
        for event in session.stream({"message": "again"}):
            print(event)

The client keeps and rotates the continuation token itself, sends every turn with an
Idempotency-Key, retries network errors, timeouts and 503s with the same key and token, and
recovers a lost reply (a replay, a read with the consumed token, or a resumed event stream).
`AsyncClient` is the same API for asyncio.
"""

from baton_client.client import DEFAULT_TIMEOUT, AsyncClient
from baton_client.errors import (
    BadRequest,
    BatonError,
    Cancelled,
    Closed,
    IdempotencyMismatch,
    InFlight,
    InternalError,
    InvalidInput,
    MissingToken,
    NoSession,
    StaleToken,
    TooLarge,
    TurnFailed,
    Unavailable,
    UnexpectedToken,
    UnknownSession,
)
from baton_client.models import (
    Delta,
    Event,
    Outcome,
    Record,
    RecoveryStats,
    SessionView,
    StoredEvent,
    TurnError,
)
from baton_client.retry import RetryPolicy
from baton_client.session import AsyncSession
from baton_client.store import FileTokenStore, MemoryTokenStore, SavedSession, TokenStore
from baton_client.sync import Client, Session

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AsyncSession",
    "BadRequest",
    "BatonError",
    "Cancelled",
    "Client",
    "Closed",
    "Delta",
    "Event",
    "FileTokenStore",
    "IdempotencyMismatch",
    "InFlight",
    "InternalError",
    "InvalidInput",
    "MemoryTokenStore",
    "MissingToken",
    "NoSession",
    "Outcome",
    "Record",
    "RecoveryStats",
    "RetryPolicy",
    "SavedSession",
    "Session",
    "SessionView",
    "StaleToken",
    "StoredEvent",
    "TokenStore",
    "TooLarge",
    "TurnError",
    "TurnFailed",
    "Unavailable",
    "UnexpectedToken",
    "UnknownSession",
]
