"""Access and privacy: users, sign-in, roles scoped by the grid hierarchy, audit, embeds.

* :mod:`~geogrid.access.scope` — a user's scope (all, a town, a village or a grid) and the
  prefix that filters rows in SQL.
* :mod:`~geogrid.access.policy` — roles, the one declarative policy table (role × action ×
  scope relation) and :func:`~geogrid.access.policy.check`.
* :mod:`~geogrid.access.passwords`, :mod:`~geogrid.access.users` — Argon2 hashes, password
  rules, lockout; user administration (the ``geogrid user`` commands).
* :mod:`~geogrid.access.tokens`, :mod:`~geogrid.access.sessions` — signed access tokens and
  rotating refresh tokens for the API; server-side sessions with CSRF tokens for pages.
* :mod:`~geogrid.access.audit` — the append-only, hash-chained audit log.
* :mod:`~geogrid.access.rls` — the request's scope set per transaction for row-level security.
* :mod:`~geogrid.access.embed` — signed, revocable embed tokens for other portals.

Nothing here imports FastAPI: :mod:`api.auth` turns these into request dependencies.
"""
