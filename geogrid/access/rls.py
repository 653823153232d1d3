"""Row-level security, the second wall: the request's scope, set per transaction.

The web server runs as ``geogrid_web`` (no table is its own), and the personal tables have
``FORCE ROW LEVEL SECURITY`` policies calling ``geogrid_scope_allows(key)`` and
``geogrid_special_allowed()``. :func:`apply` sets what those read, with
``set_config(..., true)``, i.e. for the current transaction only, so a pooled connection never
carries one request's scope into the next. Without it, every policy refuses every row.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from geogrid.access.policy import Principal


def apply(conn: Connection, principal: Principal | None) -> None:
    """Set the transaction's scope for ``principal`` (nothing visible for ``None``)."""
    scope = "" if principal is None else principal.scope.sql_value
    special = "on" if principal is not None and "special" in principal.permissions else "off"
    conn.execute(
        text(
            "SELECT set_config('geogrid.scope', :s, true), set_config('geogrid.special', :p, true)"
        ),
        {"s": scope, "p": special},
    )
