"""One hierarchy of domain errors.

Domain code raises these; the web layer (``api``) maps them to HTTP status codes in
one table, and the CLI prints their message as one line. Domain code never raises
``HTTPException``.
"""

from __future__ import annotations

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


class ConfigurationError(GeogridError):
    """The environment is not set up: missing binaries, bad database URL, corrupt folder."""
