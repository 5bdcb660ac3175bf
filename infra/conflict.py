"""How a store says a write lost a race, whatever the database."""


class Conflict(Exception):
    """A write lost a race: a unique key or the projection's version said no."""


class StoreCorrupted(RuntimeError):
    """A conflict that does not go away on a fresh read: the table disagrees with itself."""


# A conflict means another transaction changed the session between our read and our write;
# reading again decides again (usually a refusal). Locks make this rare, so a few attempts
# are plenty and a longer loop would only hide a bug.
CLAIM_ATTEMPTS = 3
