"""The reasons the API answers with besides the protocol's refusals (domain.refusals)."""

BAD_REQUEST = "bad-request"  # not JSON, not an object, a field of the wrong type
TOO_LARGE = "too-large"  # a body over the limit
TURN_FAILED = "turn-failed"  # the handler raised or timed out; the token stays valid
UNAVAILABLE = "unavailable"  # the database is unreachable, or this replica is shutting down
INTERNAL = "internal-error"  # a bug of ours
WEBSOCKETS_DISABLED = "websockets-disabled"  # /v1/ws on a server started --no-websockets
UNAUTHORIZED = "unauthorized"  # an admin route without a valid admin key (api/admin.py)
CANCELLED = "cancelled"  # the turn's own request, after its holder cancelled it (6.5)
TOO_MANY_REFUSALS = "too-many-refusals"  # a client past BATON_REFUSAL_LIMIT (refusal_limit)
UNAUTHENTICATED = "unauthenticated"  # the turn API wants a bearer key or JWT (api/auth.py)
