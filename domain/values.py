"""How Baton declares the value types it builds and reads itself: events, commands, states,
decisions, replies.

`@value` is a dataclass with slots, compared and hashed by its fields, that the type checker
holds immutable (`mypy --strict`, run by `make test`, refuses an assignment to a field) and
the runtime does not. Why: a frozen dataclass's `__init__` sets every field through
`object.__setattr__`, about 1,300 instructions a field against a plain slot store, and a
buffered turn builds some fifteen such values with over a hundred fields between them. Made
this way they cost a PostgreSQL turn 10% fewer instructions (make bench-instructions; the
README's performance section).

What application code builds or is handed (`Turn`, `Finished`, `Parked`, `BatonConfig`,
`Settings`) stays `@dataclass(frozen=True, slots=True)`: nothing type-checks a handler, so
there the runtime keeps the promise.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")


@overload
def value(cls: type[T], /) -> type[T]: ...


@overload
def value(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[T] | None = None, /, *, kw_only: bool = False) -> Any:
    """`@value` or `@value(kw_only=True)`: see the module's docstring."""

    def declare(declared: type[T]) -> type[T]:
        return dataclass(slots=True, unsafe_hash=True, kw_only=kw_only)(declared)

    return declare if cls is None else declare(cls)
