"""No token in any log: uvicorn writes every request's path with its query string (the
access log, and a WebSocket's upgrade line), and a client may put a token there, however
wrong that is. Baton never takes a secret from a query, so the values of every query
parameter but the few it does take are blanked before a line is written."""

import logging
import re
from collections.abc import Iterable

# The query parameters Baton reads; none of them is a secret.
KEPT = frozenset({"after", "limit", "wait", "status", "created_after", "created_before"})
_PARAMETER = re.compile(r"([?&])([^=&#\s]*)=([^&#\s\"]*)")
UVICORN_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """`text` with the value of every query parameter Baton does not read blanked."""

    def blank(match: re.Match[str]) -> str:
        mark, name, _ = match.groups()
        return match.group(0) if name in KEPT else f"{mark}{name}=<redacted>"

    return _PARAMETER.sub(blank, text) if "?" in text else text


class RedactQueries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact_queries(loggers: Iterable[str] = UVICORN_LOGGERS) -> None:
    """Install the filter on uvicorn's loggers (idempotent)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactQueries) for existing in logger.filters):
            logger.addFilter(RedactQueries())
