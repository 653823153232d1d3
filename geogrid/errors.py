"""One hierarchy of domain errors.

Domain code raises these; the web layer (``api``) maps them to HTTP status codes in
one table, and the CLI prints their message as one line. Domain code never raises
``HTTPException``.
"""

from __future__ import annotations

import traceback
from typing import Any


class GeogridError(Exception):
    """Base class for every error geogrid reports to a user.

    Parameters
    ----------
    message
        One sentence saying what is wrong and, where possible, what to do.
    detail
        Optional machine-readable context (offending ids, row numbers, ...).
    """

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def __str__(self) -> str:
        return self.message


class InvalidInput(GeogridError):
    """The caller's input is malformed: bad geometry, wrong CRS, missing column..."""


class NotFound(GeogridError):
    """A named object (plan, grid, village...) does not exist."""


class Conflict(GeogridError):
    """The request conflicts with the current state (duplicate id, stale ETag...)."""


class IllegalTransition(GeogridError):
    """A workflow or plan-status transition that the state machine forbids."""


class Forbidden(GeogridError):
    """The user's role or scope does not allow this."""


class Unauthenticated(GeogridError):
    """Nobody is signed in (or the credentials are missing, malformed, expired or revoked)."""


class ConfigurationError(GeogridError):
    """The environment is not set up: missing binaries, bad database URL, corrupt folder."""


def log_summary(exc: BaseException) -> str:
    """One log line about an unexpected error, without its message.

    Messages of database errors carry the SQL statement and its parameters (residents'
    names, ID numbers...), so only the error class, the SQLSTATE and where it was raised
    are kept: enough to find the bug, nothing personal.

    >>> try:
    ...     int("secret")
    ... except ValueError as e:
    ...     line = log_summary(e)
    >>> line.startswith("ValueError at ") and "secret" not in line
    True
    """
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    stack = list(traceback.extract_tb(exc.__traceback__))
    ours = [f for f in stack if "site-packages" not in f.filename]
    shown = [*ours[-3:], *stack[-1:]] if ours and ours[-1] is not stack[-1] else stack[-4:]
    where = " < ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(shown)
    )
    kind = type(exc).__name__ + (f"({type(orig).__name__})" if orig is not None else "")
    return f"{kind}{f' SQLSTATE {sqlstate}' if sqlstate else ''} at {where or '?'}"
