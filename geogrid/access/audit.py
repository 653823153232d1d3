"""The audit log: append-only, hash-chained, partitioned by month.

Who, when, from where, what action, which records, success or refusal — for every read of
personal data, every write and every sign-in. The database refuses UPDATE, DELETE and
TRUNCATE on it (migration 0007); a trigger chains each row to the one before it, and
:func:`verify` recomputes the chain so that any edit, deletion or insertion in the middle
is found. The head hash printed by ``geogrid audit verify`` can be written down elsewhere:
a rewrite of the whole chain then shows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from geogrid.access.policy import Principal
from geogrid.errors import InvalidInput

GENESIS = "0" * 64
#: Logs are kept at least this long (等保 2.0: six months); nothing here deletes them.
KEEP_MONTHS = 6


def record(
    conn: Connection,
    *,
    actor: Principal | None,
    action: str,
    outcome: str = "ok",
    target_type: str | None = None,
    target_ids: Sequence[str] = (),
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction. ``detail`` must hold no personal data."""
    conn.execute(
        text(
            "INSERT INTO audit_log (actor_id, actor, actor_role, ip, action, outcome, "
            "target_type, target_ids, detail, prev_hash, hash) VALUES (:aid, :a, :r, :ip, "
            ":act, :o, :tt, :ids, CAST(:d AS jsonb), '', '')"
        ),
        {
            "aid": actor.user_id if actor and actor.user_id > 0 else None,
            "a": actor.username if actor else None,
            "r": str(actor.role) if actor else None,
            "ip": ip,
            "act": action,
            "o": outcome,
            "tt": target_type,
            "ids": [str(i) for i in target_ids][:1000],
            "d": json.dumps(detail or {}, ensure_ascii=False, default=str),
        },
    )


def ensure_partitions(conn: Connection, *, months_ahead: int = 3) -> list[str]:
    """Create the monthly partitions from this month to ``months_ahead`` ahead.

    The one mechanism for every monthly-partitioned table (this log, case events, heat
    rows): :func:`geogrid.ops.partitions.ensure`, which also moves rows that landed in a
    DEFAULT partition into their own month's. Returns the partitions created.
    """
    from geogrid.ops.partitions import ensure

    return ensure(conn, months_ahead=months_ahead).created


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str | None
    actor_role: str | None
    ip: str | None
    action: str
    outcome: str
    target_type: str | None
    target_ids: list[str]
    detail: dict[str, Any]


def search(
    conn: Connection,
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Entry], int]:
    """Entries matching every given filter, newest first, and how many match in all."""
    if outcome is not None and outcome not in ("ok", "refused", "failed"):
        raise InvalidInput("outcome is one of ok, refused, failed")
    where = """
        (CAST(:actor AS text) IS NULL OR actor = :actor)
        AND (CAST(:action AS text) IS NULL OR action LIKE :action || '%')
        AND (CAST(:outcome AS text) IS NULL OR outcome = :outcome)
        AND (CAST(:target AS text) IS NULL OR :target = ANY(target_ids))
        AND (CAST(:since AS timestamptz) IS NULL OR at >= :since)
        AND (CAST(:until AS timestamptz) IS NULL OR at < :until)
    """
    params = {
        "actor": actor,
        "action": action,
        "outcome": outcome,
        "target": target,
        "since": since,
        "until": until,
    }
    total = conn.execute(text(f"SELECT count(*) FROM audit_log WHERE {where}"), params).scalar()
    rows = conn.execute(
        text(
            f"SELECT id, at, actor, actor_role, ip, action, outcome, target_type, target_ids, "
            f"detail FROM audit_log WHERE {where} ORDER BY id DESC LIMIT :lim OFFSET :off"
        ),
        {**params, "lim": limit, "off": offset},
    )
    return [Entry(**r._mapping) for r in rows], int(total or 0)


@dataclass(frozen=True)
class Verification:
    entries: int
    head: str
    broken_at: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(conn: Connection) -> Verification:
    """Recompute the chain, in id order; the first entry that does not fit is reported."""
    rows = conn.execute(
        text(
            "SELECT id, hash, prev_hash, geogrid_audit_canonical(id, at, actor_id, actor, "
            "actor_role, ip, action, outcome, target_type, target_ids, detail, prev_hash) "
            "AS canonical FROM audit_log ORDER BY id"
        )
    )
    prev = GENESIS
    n = 0
    for r in rows:
        n += 1
        if r.prev_hash != prev:
            return Verification(
                n,
                prev,
                r.id,
                "its previous-hash does not match the entry "
                "before it (an entry was removed or inserted)",
            )
        if hashlib.sha256(r.canonical.encode()).hexdigest() != r.hash:
            return Verification(n, prev, r.id, "its content does not match its hash (edited)")
        prev = r.hash
    return Verification(n, prev, None, None)
