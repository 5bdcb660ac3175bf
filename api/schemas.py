"""The wire shapes, as msgspec Structs so Litestar can encode them fast and document them."""

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType


class TurnReplyBody(msgspec.Struct, kw_only=True, rename="camel"):
    """A buffered turn (PROTOCOL section 5). Exactly one of output, wait, current is set."""

    session_id: str
    continuation_token: str | UnsetType = UNSET  # absent only when nothing committed
    status: str
    output: Any | UnsetType = UNSET
    wait: Any | UnsetType = UNSET
    current: int | UnsetType = UNSET
    turn: int
    records: list[Any]


class ErrorBody(msgspec.Struct):
    """Every refusal and error: a message for people and a reason for programs."""

    error: str
    reason: str
