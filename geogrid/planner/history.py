"""The edit log of a draft plan: village snapshots, undo and redo as new versions.

Every edit of a draft (move, rename, lock, unlock, re-run of a village) changes the basic
grids of one village. It is recorded in ``plan_edits`` with the *snapshot* of that
village before and after it: each basic grid's code, name, geometry, counts, metrics
(with its member units, which give the group memberships) and lock, plus the village's
quality row and the plan's totals. Undo is linear: it restores the ``before`` snapshot
of the last edit not yet undone and is itself logged (kind ``undo``) as a new version of
the plan; redo restores the ``after`` snapshot of the last edit undone (kind ``redo``). A
new edit after an undo clears what could be redone. Because undo only ever steps back
from the current state, a snapshot restored is exactly the state it records.

Every function here runs inside the caller's transaction after :func:`lock_draft`, which
takes the plan's row lock, checks that it is a draft and compares the caller's version
(the ``If-Match`` ETag) with the stored one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from geogrid.errors import IllegalTransition, InvalidInput, NotFound

__all__ = [
    "DraftLock",
    "EditEntry",
    "EditResult",
    "History",
    "apply_edit",
    "history",
    "lock_draft",
    "redo",
    "restore",
    "snapshot",
    "undo",
]


@dataclass(frozen=True)
class DraftLock:
    """A draft plan locked for an edit: its town, metrics and current version."""

    plan_id: int
    town_code: str
    metrics: dict[str, Any]
    version: int


@dataclass(frozen=True)
class EditResult:
    """What an edit, undo or redo did: the plan's new version and the log entry."""

    plan_id: int
    version: int
    seq: int
    kind: str
    village_code: str | None
    payload: dict[str, Any]

    @property
    def etag(self) -> str:
        """Strong entity tag of the plan's new version."""
        return f'"plan-{self.plan_id}-v{self.version}"'


@dataclass(frozen=True)
class EditEntry:
    """One row of a plan's history (snapshots left out)."""

    seq: int
    kind: str
    village_code: str | None
    payload: dict[str, Any]
    target_seq: int | None
    version: int
    author: str | None
    created_at: datetime
    undone: bool


@dataclass(frozen=True)
class History:
    """A plan's edit history, newest last, and what undo and redo would do next."""

    plan_id: int
    version: int
    entries: list[EditEntry] = field(default_factory=list)
    undo_seq: int | None = None
    redo_seq: int | None = None

    @property
    def can_undo(self) -> bool:
        return self.undo_seq is not None

    @property
    def can_redo(self) -> bool:
        return self.redo_seq is not None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def lock_draft(conn: Connection, plan_id: int, expected_version: int | None) -> DraftLock:
    """Lock a plan row for an edit; it must be a draft at ``expected_version``.

    Parameters
    ----------
    expected_version
        The version the caller edited (``None`` or negative: any version).

    Raises
    ------
    NotFound
        No such plan.
    IllegalTransition
        The plan is not a draft.
    geogrid.plans.StaleVersion
        The plan is at another version.
    """
    from geogrid.plans import StaleVersion

    row = conn.execute(
        text("SELECT town_code, status, metrics FROM plans WHERE id = :id FOR UPDATE"),
        {"id": plan_id},
    ).first()
    if row is None:
        raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
    town, status, metrics = str(row[0]), str(row[1]), dict(row[2] or {})
    version = int(metrics.get("version", 1))
    if status != "draft":
        raise IllegalTransition(
            f"plan {plan_id} is {status}; only a draft plan can be edited "
            "(create a redraw from it and edit that).",
            detail={"plan_id": plan_id, "status": status, "reason": "not_draft"},
        )
    if expected_version is not None and expected_version >= 0 and expected_version != version:
        raise StaleVersion(
            f"plan {plan_id} is at version {version}, not {expected_version}: it was "
            "edited since you read it; reload it and repeat the edit.",
            detail={"plan_id": plan_id, "version": version},
        )
    return DraftLock(plan_id, town, metrics, version)


def snapshot(conn: Connection, plan_id: int, village_code: str) -> dict[str, Any]:
    """The state of one village of a plan: its basic grids, quality row and the totals."""
    rows = conn.execute(
        text(
            "SELECT code, name, encode(ST_AsBinary(geom), 'hex') AS wkb, households, "
            "population, metrics, locked FROM grids "
            "WHERE plan_id = :p AND level = 3 AND village_code = :v ORDER BY code"
        ),
        {"p": plan_id, "v": village_code},
    ).all()
    village = conn.execute(
        text(
            "SELECT households, population, metrics FROM grids "
            "WHERE plan_id = :p AND level = 2 AND code = :v"
        ),
        {"p": plan_id, "v": village_code},
    ).first()
    metrics = conn.execute(
        text("SELECT metrics FROM plans WHERE id = :p"), {"p": plan_id}
    ).scalar_one()
    entry = next((v for v in metrics.get("villages", []) if v.get("code") == village_code), None)
    return {
        "village_code": village_code,
        "grids": [
            {
                "code": r.code,
                "name": r.name,
                "wkb": r.wkb,
                "households": int(r.households),
                "population": int(r.population),
                "metrics": r.metrics or {},
                "locked": bool(r.locked),
            }
            for r in rows
        ],
        "village": None
        if village is None
        else {
            "households": int(village.households),
            "population": int(village.population),
            "metrics": village.metrics or {},
        },
        "village_entry": entry,
        "totals": metrics.get("totals", {}),
    }


def restore(conn: Connection, plan_id: int, snap: dict[str, Any]) -> None:
    """Make one village of a plan exactly as ``snap`` recorded it.

    Grids whose code is in the snapshot are updated in place (their staff posts stay),
    grids not in it are deleted, missing ones inserted; the group memberships are
    rewritten from the snapshot's units.
    """
    vc = snap["village_code"]
    parent = conn.execute(
        text("SELECT id FROM grids WHERE plan_id = :p AND level = 2 AND code = :v"),
        {"p": plan_id, "v": vc},
    ).scalar_one()
    current = {
        str(c): int(i)
        for c, i in conn.execute(
            text(
                "SELECT code, id FROM grids WHERE plan_id = :p AND level = 3 AND village_code = :v"
            ),
            {"p": plan_id, "v": vc},
        )
    }
    wanted = {g["code"] for g in snap["grids"]}
    conn.execute(
        text("DELETE FROM grid_groups WHERE plan_id = :p AND grid_id = ANY(:ids)"),
        {"p": plan_id, "ids": list(current.values())},
    )
    gone = [i for c, i in current.items() if c not in wanted]
    if gone:
        conn.execute(text("DELETE FROM grids WHERE id = ANY(:ids)"), {"ids": gone})
    ids: dict[str, int] = {}
    for g in snap["grids"]:
        values = {
            "p": plan_id,
            "code": g["code"],
            "name": g["name"],
            "wkb": g["wkb"],
            "h": g["households"],
            "pop": g["population"],
            "m": _json(g["metrics"]),
            "locked": g["locked"],
            "parent": parent,
            "v": vc,
        }
        geom = "ST_Multi(ST_GeomFromWKB(decode(:wkb, 'hex'), 4326))"
        if g["code"] in current:
            conn.execute(
                text(
                    f"UPDATE grids SET name = :name, geom = {geom}, households = :h, "
                    "population = :pop, metrics = CAST(:m AS jsonb), locked = :locked "
                    "WHERE plan_id = :p AND code = :code"
                ),
                values,
            )
            ids[g["code"]] = current[g["code"]]
        else:
            ids[g["code"]] = int(
                conn.execute(
                    text(
                        "INSERT INTO grids (plan_id, code, level, parent_id, village_code, name, "
                        f"geom, households, population, metrics, locked) VALUES (:p, :code, 3, "
                        f":parent, :v, :name, {geom}, :h, :pop, CAST(:m AS jsonb), :locked) "
                        "RETURNING id"
                    ),
                    values,
                ).scalar_one()
            )
    members = [
        {"grid": ids[g["code"]], "group": u["group_id"], "part": u.get("part"), "p": plan_id}
        for g in snap["grids"]
        for u in g["metrics"].get("units", [])
        if u.get("group_id") is not None
    ]
    if members:
        conn.execute(
            text(
                "INSERT INTO grid_groups (grid_id, group_id, plan_id, part) "
                "VALUES (:grid, :group, :p, :part)"
            ),
            members,
        )
    if snap.get("village") is not None:
        conn.execute(
            text(
                "UPDATE grids SET households = :h, population = :pop, metrics = CAST(:m AS jsonb) "
                "WHERE id = :id"
            ),
            {
                "h": snap["village"]["households"],
                "pop": snap["village"]["population"],
                "m": _json(snap["village"]["metrics"]),
                "id": parent,
            },
        )
    metrics = conn.execute(
        text("SELECT metrics FROM plans WHERE id = :p"), {"p": plan_id}
    ).scalar_one()
    villages = [v for v in metrics.get("villages", []) if v.get("code") != vc]
    if snap.get("village_entry") is not None:
        villages.append(snap["village_entry"])
    villages.sort(key=lambda v: str(v.get("code")))
    metrics |= {"villages": villages, "totals": snap["totals"]}
    conn.execute(
        text("UPDATE plans SET metrics = CAST(:m AS jsonb) WHERE id = :p"),
        {"m": _json(metrics), "p": plan_id},
    )
    conn.execute(
        text("UPDATE grids SET metrics = CAST(:m AS jsonb) WHERE plan_id = :p AND level = 1"),
        {"m": _json({"totals": snap["totals"]}), "p": plan_id},
    )


def _bump(conn: Connection, plan_id: int) -> int:
    return int(
        conn.execute(
            text(
                "UPDATE plans SET updated_at = now(), metrics = jsonb_set(metrics, '{version}', "
                "to_jsonb(COALESCE((metrics->>'version')::int, 1) + 1)) WHERE id = :p "
                "RETURNING (metrics->>'version')::int"
            ),
            {"p": plan_id},
        ).scalar_one()
    )


def apply_edit(
    conn: Connection,
    plan_id: int,
    *,
    kind: str,
    village_code: str,
    payload: dict[str, Any],
    before: dict[str, Any],
    author: str | None,
    target_seq: int | None = None,
    bump: bool = True,
) -> EditResult:
    """Log an edit already applied to ``village_code`` (its ``before`` snapshot given).

    Takes the ``after`` snapshot, bumps the plan's version (unless the caller did,
    ``bump=False``) and appends the log row. Returns the new version and sequence number.
    """
    after = snapshot(conn, plan_id, village_code)
    if bump:
        version = _bump(conn, plan_id)
    else:
        version = int(
            conn.execute(
                text("SELECT COALESCE((metrics->>'version')::int, 1) FROM plans WHERE id = :p"),
                {"p": plan_id},
            ).scalar_one()
        )
    seq = int(
        conn.execute(
            text(
                "INSERT INTO plan_edits (plan_id, seq, kind, village_code, payload, before, after, "
                "target_seq, version, author) VALUES (:p, "
                "(SELECT COALESCE(max(seq), 0) + 1 FROM plan_edits WHERE plan_id = :p), :kind, "
                ":v, CAST(:payload AS jsonb), CAST(:before AS jsonb), CAST(:after AS jsonb), "
                ":target, :version, :author) RETURNING seq"
            ),
            {
                "p": plan_id,
                "kind": kind,
                "v": village_code,
                "payload": _json(payload),
                "before": _json(before),
                "after": _json(after),
                "target": target_seq,
                "version": version,
                "author": author,
            },
        ).scalar_one()
    )
    return EditResult(plan_id, version, seq, kind, village_code, payload)


def _stacks(rows: list[Any]) -> tuple[list[int], list[int]]:
    """(edits in effect, edits undone) in order, from the log rows (seq, kind, target)."""
    done: list[int] = []
    undone: list[int] = []
    for seq, kind, target in rows:
        if kind == "undo":
            if done and done[-1] == target:
                undone.append(done.pop())
        elif kind == "redo":
            if undone and undone[-1] == target:
                done.append(undone.pop())
        else:
            done.append(int(seq))
            undone.clear()
    return done, undone


def _log_rows(conn: Connection, plan_id: int) -> list[Any]:
    return list(
        conn.execute(
            text("SELECT seq, kind, target_seq FROM plan_edits WHERE plan_id = :p ORDER BY seq"),
            {"p": plan_id},
        ).all()
    )


def history(conn: Connection, plan_id: int) -> History:
    """A plan's edit log with what undo and redo would do next.

    Raises
    ------
    NotFound
        No such plan.
    """
    version = conn.execute(
        text("SELECT COALESCE((metrics->>'version')::int, 1) FROM plans WHERE id = :p"),
        {"p": plan_id},
    ).scalar_one_or_none()
    if version is None:
        raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
    rows = conn.execute(
        text(
            "SELECT seq, kind, village_code, payload, target_seq, version, author, created_at "
            "FROM plan_edits WHERE plan_id = :p ORDER BY seq"
        ),
        {"p": plan_id},
    ).all()
    done, undone = _stacks([(r.seq, r.kind, r.target_seq) for r in rows])
    in_effect = set(done)
    entries = [
        EditEntry(
            seq=int(r.seq),
            kind=str(r.kind),
            village_code=r.village_code,
            payload=dict(r.payload or {}),
            target_seq=r.target_seq,
            version=int(r.version),
            author=r.author,
            created_at=r.created_at,
            undone=r.kind not in ("undo", "redo") and int(r.seq) not in in_effect,
        )
        for r in rows
    ]
    return History(
        plan_id=plan_id,
        version=int(version),
        entries=entries,
        undo_seq=done[-1] if done else None,
        redo_seq=undone[-1] if undone else None,
    )


def _step(
    engine: Engine, plan_id: int, expected_version: int | None, author: str | None, kind: str
) -> EditResult:
    with engine.begin() as conn:
        lock_draft(conn, plan_id, expected_version)
        done, undone = _stacks(_log_rows(conn, plan_id))
        stack = done if kind == "undo" else undone
        if not stack:
            raise InvalidInput(
                f"nothing to {kind} in plan {plan_id}.",
                detail={"plan_id": plan_id, "reason": f"nothing_to_{kind}"},
            )
        target = stack[-1]
        row = conn.execute(
            text(
                "SELECT kind, village_code, payload, before, after FROM plan_edits "
                "WHERE plan_id = :p AND seq = :s"
            ),
            {"p": plan_id, "s": target},
        ).one()
        before = snapshot(conn, plan_id, str(row.village_code))
        restore(conn, plan_id, row.before if kind == "undo" else row.after)
        payload = {"of": target, "kind": row.kind, **dict(row.payload or {})}
        return apply_edit(
            conn, plan_id, kind=kind, village_code=str(row.village_code), payload=payload,
            before=before, author=author, target_seq=target,
        )  # fmt: skip


def undo(
    engine: Engine, plan_id: int, *, expected_version: int | None = None, author: str | None = None
) -> EditResult:
    """Undo the last edit of a draft still in effect, as a new version of the plan.

    Raises
    ------
    NotFound, IllegalTransition, geogrid.plans.StaleVersion
        See :func:`lock_draft`.
    InvalidInput
        Nothing to undo (``detail["reason"] == "nothing_to_undo"``).
    """
    return _step(engine, plan_id, expected_version, author, "undo")


def redo(
    engine: Engine, plan_id: int, *, expected_version: int | None = None, author: str | None = None
) -> EditResult:
    """Redo the edit undone last, as a new version of the plan.

    Raises
    ------
    NotFound, IllegalTransition, geogrid.plans.StaleVersion
        See :func:`lock_draft`.
    InvalidInput
        Nothing to redo (no undo since the last edit).
    """
    return _step(engine, plan_id, expected_version, author, "redo")
