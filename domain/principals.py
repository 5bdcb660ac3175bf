"""Principals (README, Principals): who is asking, and which sessions exist for them.

When the server authenticates requests (api/auth.py), each one comes with a principal: a
name such as "key:billing" or "jwt:user-42". A session belongs to the principal that
started it; to any other principal it does not exist, so every answer about it is the one
an unknown session gets (404 unknown-session), and its id reveals nothing across tenants.
Idempotency-Keys are scoped the same way (domain/recovery.py), so two tenants that pick the
same key never meet.

A session started while the server authenticated no one has no owner and stays open to
every principal; a request with no principal (authentication off) sees every session.
"""

from baton.domain.state import SessionState


def visible_to(state: SessionState | None, principal: str | None) -> SessionState | None:
    """The session as `principal` may see it: itself, or None (unknown) if another owns it."""
    if state is None or principal is None or state.owner is None:
        return state
    return state if state.owner == principal else None
