"""Reading a session's history: which of its stored records still count.

A handler's records are stored as they happen, inside the claim, so that a stream can carry
their seqs; a turn attempt that does not commit leaves them in the table as history, void.
"""

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from baton.domain.events import EventKind

# Kinds that end a turn attempt without a commit: its records are void.
_ENDS_UNCOMMITTED = frozenset(
    {
        EventKind.RELEASED,
        EventKind.EXPIRED,
        EventKind.CLOSED,
        EventKind.CLAIMED,
        EventKind.STARTED,
    }
)


class StoredFact(Protocol):
    """Any stored event: what void_records needs to know of it (and its kind)."""

    @property
    def seq(self) -> int | None: ...


F = TypeVar("F", bound=StoredFact)


def _kind_column(event: Any) -> str:
    kind: str = event.kind
    return kind


ATTEMPT_ENDS = _ENDS_UNCOMMITTED | {EventKind.COMMITTED}
"""Every kind that ends a turn attempt: the first one after a record decides its fate."""


def void_records(events: Iterable[F], kind: Callable[[F], str] = _kind_column) -> list[F]:
    """The `record` events whose turn attempt did not commit.

    In seq order, a turn attempt runs from its claim (`started`/`claimed`) to its end. Its
    records are kept by its `committed`; a `released` (failed, timed out, cancelled), an
    `expired` (the lease lapsed and another claim took over), a `closed`, or a later claim
    ends it without a commit and voids them. Records of an attempt still running are not
    void: it may yet commit. Refusals (no seq) play no part. `kind` names an event's kind
    (by default its `kind` attribute, as stored rows have it).
    """
    void: list[F] = []
    pending: list[F] = []
    in_order = sorted((event for event in events if event.seq is not None), key=_seq)
    for event in in_order:
        if kind(event) == EventKind.RECORD:
            pending.append(event)
        elif kind(event) == EventKind.COMMITTED:
            pending.clear()
        elif kind(event) in _ENDS_UNCOMMITTED:
            void += pending
            pending.clear()
    return void


def _seq(event: StoredFact) -> int:
    return event.seq or 0
