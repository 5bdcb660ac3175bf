"""Baton: durable, replay-safe HTTP sessions backed by an event-sourced SQL store.

The public surface, for a handler and for an application that embeds Baton:

    from baton import Turn, Finished, Parked, InvalidInput

Everything else lives under baton.domain (the protocol's rules), baton.infra (the stores)
and baton.api (the Litestar app, transports and CLI).
"""

from baton.domain.handler import InvalidInput, Turn
from baton.domain.outcomes import KEEP, Finished, Parked

__all__ = ["KEEP", "Finished", "InvalidInput", "Parked", "Turn"]
