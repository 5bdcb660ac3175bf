"""Baton: durable, replay-safe HTTP sessions backed by an event-sourced SQL store.

The public surface, for a handler and for an application that embeds Baton:

    from baton import Turn, Finished, Parked, InvalidInput, BatonPlugin, BatonConfig

Everything else lives under baton.domain (the protocol's rules), baton.infra (the stores)
and baton.api (the Litestar app, transports and CLI).
"""

from typing import TYPE_CHECKING, Any

from baton.domain.handler import InvalidInput, Turn
from baton.domain.outcomes import KEEP, Finished, Parked

if TYPE_CHECKING:
    from baton.api.plugin import BatonConfig, BatonPlugin

__all__ = ["KEEP", "BatonConfig", "BatonPlugin", "Finished", "InvalidInput", "Parked", "Turn"]


def __getattr__(name: str) -> Any:
    """The plugin on first use: a handler's module imports `baton` (and so this file) without
    loading Litestar and the stores with it."""
    if name in {"BatonConfig", "BatonPlugin"}:
        from baton.api import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'baton' has no attribute {name!r}")
