"""How one action changes a case: who may take it (role and duty), the body fields it
needs, the fields it sets and the step deadline it starts — the rules of
:data:`geogrid.cases.machine.TRANSITIONS`, applied by :mod:`geogrid.cases.service`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, text

from geogrid.access.policy import Principal, Role
from geogrid.access.scope import Scope
from geogrid.cases import machine, routing
from geogrid.cases.calendar import CalendarUnknown, add_working_time
from geogrid.cases.shapes import ActionInfo
from geogrid.errors import InvalidInput

__all__ = ["allowed", "applies", "body", "deadline", "effects", "may"]


#: Every step's time limit of case ``c``'s category (a subclass's own, else its class's) as
#: ``{step: [amount, unit]}`` (NULL: none), read with the locked row (no query per step).
LIMITS_SQL: Final = """(SELECT json_object_agg(l.step, json_build_array(l.amount, l.unit))
  FROM (SELECT DISTINCT ON (t.step) t.step, t.amount, t.unit FROM case_time_limits t
         WHERE t.category_code IN (coalesce(nullif(c.category_code, ''), '09'),
                                   left(coalesce(nullif(c.category_code, ''), '09'), 2))
         ORDER BY t.step, length(t.category_code) DESC) l)"""


def deadline(
    conn: Connection,
    category_code: str | None,
    step: str | None,
    start: datetime,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``due_at``/``due_step``/``deadline_problem`` for a step started at ``start``;
    ``limits`` (from :data:`LIMITS_SQL`) spares the query of the step's limit."""
    out: dict[str, Any] = {"due_at": None, "due_step": step, "deadline_problem": None}
    if step is None:
        return out
    amount: Any
    unit: Any
    if limits is not None:
        amount, unit = limits.get(step) or (None, None)
    else:
        code = category_code or "09"
        found = conn.execute(
            text(
                "SELECT amount, unit FROM case_time_limits WHERE step = :s "
                "AND category_code IN (CAST(:c AS text), left(CAST(:c AS text), 2)) "
                "ORDER BY length(category_code) DESC LIMIT 1"
            ),
            {"s": step, "c": code},
        ).first()
        amount, unit = (found.amount, found.unit) if found else (None, None)
    if amount is None:
        return out
    try:
        out["due_at"] = add_working_time(conn, start, int(amount), unit).isoformat()
    except CalendarUnknown as exc:
        out["deadline_problem"] = exc.message
    return out


# --------------------------------------------------------------------------- checks


def may(
    conn: Connection, principal: Principal, t: machine.Transition, row: Mapping[str, Any]
) -> bool:
    """May ``principal`` take row ``t`` on the case (role and duty; scope is given)?"""
    if principal.role not in t.roles:
        return False
    if t.duty == "scope":
        return True
    if t.duty == "post":
        return routing.user_at_post(conn, principal, row["assignee_kind"], row["assignee_code"])
    if t.duty == "owner":
        return row["owner_id"] == principal.user_id or principal.role == Role.town_leader
    if t.duty == "target":
        return (row["pending_data"] or {}).get("to_user") == principal.user_id
    return row["handled_by"] != principal.user_id  # checker


def applies(t: machine.Transition, row: Mapping[str, Any]) -> bool:
    if row["status"] not in t.sources:
        return False
    resident = row["source"] in machine.RESIDENT_SOURCES
    if (t.when == "resident" and not resident) or (t.when == "staff" and resident):
        return False
    if t.pending == "none":
        return row["pending"] is None
    return t.pending is None or row["pending"] == t.pending


def allowed(conn: Connection, principal: Principal, row: Mapping[str, Any]) -> list[ActionInfo]:
    out: dict[str, ActionInfo] = {}
    for t in machine.TRANSITIONS:
        if t.action not in out and applies(t, row) and may(conn, principal, t, row):
            fields = list(t.fields) + (["post"] if "post" in t.effects else [])
            out[t.action] = ActionInfo(t.action, fields)
    return list(out.values())


def effects(
    conn: Connection,
    principal: Principal,
    t: machine.Transition,
    row: Mapping[str, Any],
    data: Mapping[str, Any],
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    """(the status it leads to, the fields it sets) for row ``t`` with the body ``data``."""
    target = row["resume_status"] if t.target == "resume" else (t.target or row["status"])
    s: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    town = routing.town_of(row["village_code"]) or ""
    for effect in t.effects:
        if effect == "owner":
            s["owner_id"] = principal.user_id
        elif effect == "post":
            post = (
                routing.validate_post(conn, data["post"], town)
                if data.get("post")
                else routing.Post(
                    row["route_kind"] or "village", row["route_code"] or row["village_code"]
                )
            )
            s["assignee_kind"], s["assignee_code"] = post.kind, post.code
        elif effect == "centre":
            s["assignee_kind"], s["assignee_code"] = "centre", town
        elif effect == "handler":
            s["handled_by"] = principal.user_id
        elif effect == "rework":
            s["rework_count"] = int(row["rework_count"]) + 1
        elif effect == "request":
            kind = t.action.removeprefix("request_")
            s["pending"] = kind
            s["pending_data"] = {
                "by": principal.user_id,
                **({"amount": data["amount"], "unit": data["unit"]} if kind == "extension" else {}),
            }
        elif effect == "approve_extension":
            pd = row["pending_data"] or {}
            base = max(row["due_at"], now) if row["due_at"] else now
            try:
                s["due_at"] = add_working_time(
                    conn, base, int(pd["amount"]), pd["unit"]
                ).isoformat()
                s["deadline_problem"] = None
            except CalendarUnknown as exc:
                s["due_at"], s["deadline_problem"] = None, exc.message
            s["pending"] = s["pending_data"] = None
            extra["extension"] = {"amount": pd.get("amount"), "unit": pd.get("unit")}
        elif effect == "clear_pending":
            s["pending"] = s["pending_data"] = None
        elif effect == "suspend":
            s.update(
                resume_status=row["status"],
                pending=None,
                pending_data=None,
                due_at=None,
                due_step=None,
                deadline_problem=None,
            )
        elif effect == "resume":
            s["resume_status"] = None
        elif effect == "transfer":
            s["pending"] = "transfer"
            s["pending_data"] = {"to_user": data["to_user"], "from_user": row["owner_id"]}
        elif effect == "acknowledge":
            s.update(owner_id=principal.user_id, pending=None, pending_data=None)
        elif effect == "merge":
            s.update(merged_into=data["into"], pending=None, pending_data=None)
        elif effect == "close":
            s["closed_at"] = now.isoformat()
    if target != row["status"] and row["pending"] in ("extension", "suspension"):
        s.setdefault("pending", None)
        s.setdefault("pending_data", None)
    step = machine.step_for(target, row["source"])
    restart = "rework" in t.effects or "resume" in t.effects or t.action == "return"
    if target in machine.CLOSED_STATUSES or target == "suspended":
        s.update(due_at=None, due_step=None, deadline_problem=None)
    if target in machine.CLOSED_STATUSES:  # a closed case waits for nobody (a transfer, say)
        s.update(pending=None, pending_data=None)
    elif target != row["status"] and (step != row["due_step"] or restart):
        limits = (row["d_limits"] or {}) if "d_limits" in row else None
        s.update(deadline(conn, row["category_code"], step, now, limits))
    return target, {"set": s, **extra}


def body(
    conn: Connection,
    principal: Principal,
    t: machine.Transition,
    row: Mapping[str, Any],
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """The body fields ``t`` needs, checked."""
    out: dict[str, Any] = {}
    if "amount" in t.fields:
        amount, unit = data.get("amount"), data.get("unit")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= 1000:
            raise InvalidInput("amount must be a whole number between 1 and 1000")
        if unit not in ("hours", "days"):
            raise InvalidInput("unit must be hours or days")
        out.update(amount=amount, unit=unit)
    if "rating" in t.fields:
        if data.get("rating") not in machine.RATINGS:
            raise InvalidInput(f"rating must be one of {', '.join(machine.RATINGS)}")
        out["rating"] = data["rating"]
    if "to_user" in t.fields:
        out["to_user"] = _transfer_target(conn, principal, row, data.get("to_user"))
    if "into" in t.fields:
        out["into"] = _merge_target(conn, principal, row, data.get("into"))
    if "post" in t.effects and data.get("post") is not None:
        out["post"] = data["post"]
    return out


def _transfer_target(
    conn: Connection, principal: Principal, row: Mapping[str, Any], to_user: Any
) -> int:
    if not isinstance(to_user, int) or isinstance(to_user, bool):
        raise InvalidInput("to_user must be the id of the user taking the case over")
    user = conn.execute(
        text("SELECT id, role, scope_kind, scope_code, disabled FROM users WHERE id = :id"),
        {"id": to_user},
    ).first()
    code = row["grid_code"] or row["village_code"]
    if (
        user is None
        or user.disabled
        or user.role not in {str(r) for r in _CASE_ROLES}
        or not Scope(user.scope_kind, user.scope_code or "").covers(code)
    ):
        raise InvalidInput(f"user {to_user} cannot take this case over (role or scope)")
    if to_user == (row["owner_id"] or principal.user_id) and row["owner_id"] is not None:
        raise InvalidInput("the case is already that user's")
    return int(to_user)


_CASE_ROLES: Final = (Role.town_leader, Role.village_leader, Role.grid_worker)


def _merge_target(conn: Connection, principal: Principal, row: Mapping[str, Any], into: Any) -> int:
    if not isinstance(into, int) or isinstance(into, bool) or into == row["id"]:
        raise InvalidInput("into must be the id of another case (the original)")
    original = conn.execute(
        text(
            "SELECT id, status, village_code, category_code FROM cases WHERE id = :id AND "
            "coalesce(grid_code, village_code) LIKE :p || '%'"
        ),
        {"id": into, "p": principal.scope.prefix},
    ).first()
    if original is None:
        raise InvalidInput(f"no case {into} in your scope to merge into")
    if original.status not in machine.OPEN_STATUSES:
        raise InvalidInput(f"case {into} is {original.status}: merge into an open case")
    if routing.town_of(original.village_code) != routing.town_of(row["village_code"]):
        raise InvalidInput("a duplicate is merged into a case of the same town")
    return int(into)
