"""Roles and the one declarative policy table: role × action × scope relation.

Every route names exactly one action (``api.auth.allow(action)``); :func:`check` decides it
from :data:`POLICY` alone, and the tests are generated from the same table. Scope
relations:

``any``
    no scope condition (public pages, one's own account, global administration);
``overlaps``
    the target is inside the user's scope or contains it (reading a town's plan from a
    village: grids are not personal);
``covers``
    the target must be inside the user's scope (writes, personal data, cases).

Lists are never filtered after fetching: services bind ``principal.scope.prefix`` into the
query itself (:data:`geogrid.access.scope.SCOPE_SQL`), and row-level security repeats it.

三员分立: the system administrator (accounts, staff), the security administrator
(permissions, public layers, embed tokens) and the auditor (the audit log) are separate
roles, and a user holds exactly one role, so no user can be two of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from geogrid.access.scope import Scope
from geogrid.errors import ConfigurationError, Forbidden, Unauthenticated


class Role(StrEnum):
    """The roles, with their Chinese names in :data:`ROLE_NAMES`."""

    sysadmin = "sysadmin"
    secadmin = "secadmin"
    auditor = "auditor"
    planner = "planner"
    town_leader = "town_leader"
    village_leader = "village_leader"
    grid_worker = "grid_worker"
    viewer = "viewer"


ROLE_NAMES: dict[Role, str] = {
    Role.sysadmin: "系统管理员",
    Role.secadmin: "安全管理员",
    Role.auditor: "审计管理员",
    Role.planner: "网格规划员",
    Role.town_leader: "镇领导",
    Role.village_leader: "村干部",
    Role.grid_worker: "网格员",
    Role.viewer: "查看者",
}

#: The three separated administrator roles (三员分立).
ADMIN_ROLES = frozenset({Role.sysadmin, Role.secadmin, Role.auditor})

#: Extra grants on top of a role and scope.
PERMISSIONS: dict[str, str] = {
    "special": "特殊人群档案 (special-population records)",
    "unmask": "查看完整个人信息 (unmask personal fields, audited)",
}

Relation = Literal["any", "overlaps", "covers"]
ANONYMOUS = "anonymous"

_ALL_ROLES = tuple(Role)
_WORK_ROLES = (Role.planner, Role.town_leader, Role.village_leader, Role.grid_worker, Role.viewer)
_CASE_ROLES = (Role.town_leader, Role.village_leader, Role.grid_worker)


def _rule(roles: tuple[Role | str, ...], relation: Relation) -> dict[str, Relation]:
    return {str(r): relation for r in roles}


@dataclass(frozen=True)
class Action:
    """One row of the policy: who may do it, with which scope relation, needing what."""

    description: str
    roles: dict[str, Relation]
    permission: str | None = None
    audited: bool = False


#: The policy. Keys are actions; an action missing here is refused to everyone.
POLICY: dict[str, Action] = {
    "public.read": Action(
        "Public pages, assets, documentation, the public grid map and its staff cards",
        _rule((ANONYMOUS, *_ALL_ROLES), "any"),
    ),
    "auth.signin": Action("Sign in, refresh a token", _rule((ANONYMOUS, *_ALL_ROLES), "any")),
    "ops.metrics": Action(
        "Prometheus metrics (/metrics): request counts and latencies per route template, the "
        "database pool, cache hits, job queue; nothing personal. Served only to the addresses "
        "in GEOGRID_METRICS_ALLOW (default: this machine), whoever signs in",
        _rule((ANONYMOUS, *_ALL_ROLES), "any"),
    ),
    "auth.self": Action(
        "One's own account: who am I, change password, sign out", _rule(_ALL_ROLES, "any")
    ),
    "open311.read": Action(
        "Open311 GeoReport v2: services, public requests (no personal data), a resident's "
        "own request by its token; the complaint pages",
        _rule((ANONYMOUS, *_ALL_ROLES), "any"),
    ),
    "open311.submit": Action(
        "Submit an Open311 request (residents need no account; rate-limited per client, "
        "64 KiB without photos)",
        _rule((ANONYMOUS, *_ALL_ROLES), "any"),
    ),
    "open311.feedback": Action(
        "Rate one's own ended Open311 request (the resident's token; rate-limited per client)",
        _rule((ANONYMOUS, *_ALL_ROLES), "any"),
    ),
    "page.desk": Action(
        "The case desk page (service centre, village and grid workers)", _rule(_CASE_ROLES, "any")
    ),
    "layer.read": Action(
        "Map layers without personal data (boundaries, grids, key units…); anonymous users "
        "only the layers marked public",
        _rule((ANONYMOUS, *_ALL_ROLES), "any"),
    ),
    "heat.read": Action(
        "Cases aggregated (heat map, counts per grid); anonymous only when marked public",
        {**_rule((ANONYMOUS,), "any"), **_rule(_WORK_ROLES, "any")},
    ),
    "case.read": Action(
        "Cases with their points and descriptions, within scope", _rule(_CASE_ROLES, "covers")
    ),
    "case.report": Action(
        "Report a case in scope and upload its photos and files", _rule(_CASE_ROLES, "covers")
    ),
    "case.work": Action(
        "Move a case in scope through the workflow (the case machine decides each action by "
        "role and duty: centre, post, owner)",
        _rule(_CASE_ROLES, "covers"),
    ),
    "case.unmask": Action(
        "See a case reporter's full name and phone",
        _rule(_CASE_ROLES, "covers"),
        permission="unmask",
        audited=True,
    ),
    "case.admin": Action(
        "The case category dictionary, time limits and routing table",
        {**_rule((Role.town_leader,), "covers"), **_rule((Role.sysadmin,), "any")},
        audited=True,
    ),
    "plan.read": Action(
        "Plans, their grids, diffs and background jobs",
        {**_rule(_WORK_ROLES, "overlaps"), **_rule((Role.sysadmin,), "any")},
    ),
    "plan.write": Action(
        "Create, redraw, edit and activate plans of a town in scope",
        _rule((Role.planner,), "covers"),
        audited=True,
    ),
    "print.read": Action(
        "Printed posters (网格化图谱) and household contact cards of a grid, village or town "
        "in scope (staff duty contacts, outlines, house numbers; no resident's name or phone)",
        _rule(_WORK_ROLES, "overlaps"),
    ),
    "page.planner": Action("The planner page", _rule((Role.planner, Role.town_leader), "any")),
    "page.leader": Action(
        "The leader page (heat map, grid performance)",
        _rule((Role.town_leader, Role.village_leader, Role.planner, Role.viewer), "any"),
    ),
    "staff.assign": Action(
        "Put staff at grid posts",
        {**_rule((Role.town_leader,), "covers"), **_rule((Role.sysadmin,), "any")},
        audited=True,
    ),
    "people.read": Action(
        "Household members (masked) within scope", _rule(_CASE_ROLES, "covers"), audited=True
    ),
    "people.write": Action(
        "Edit household members within scope",
        _rule((Role.village_leader, Role.grid_worker), "covers"),
        audited=True,
    ),
    "people.unmask": Action(
        "Unmask a person's name, phone and ID number",
        _rule(_CASE_ROLES, "covers"),
        permission="unmask",
        audited=True,
    ),
    "special.read": Action(
        "Special-population records within scope",
        _rule(_CASE_ROLES, "covers"),
        permission="special",
        audited=True,
    ),
    "special.write": Action(
        "Special-population records and follow-ups within scope",
        _rule((Role.village_leader, Role.grid_worker), "covers"),
        permission="special",
        audited=True,
    ),
    "user.manage": Action(
        "Accounts: add, list, disable, enable, reset passwords",
        _rule((Role.sysadmin,), "any"),
        audited=True,
    ),
    "user.grant": Action(
        "Grant or revoke the extra permissions (special, unmask)",
        _rule((Role.secadmin,), "any"),
        audited=True,
    ),
    "layer.publish": Action(
        "Mark layers public or not; issue and revoke embed tokens",
        _rule((Role.secadmin,), "any"),
        audited=True,
    ),
    "audit.read": Action("Search the audit log", _rule((Role.auditor,), "any"), audited=True),
    "calendar.read": Action(
        "The working calendar (holidays, make-up working days, office hours), deadlines",
        _rule(_ALL_ROLES, "any"),
    ),
    "calendar.manage": Action(
        "Edit the working calendar: days, office hours, declare a year",
        _rule((Role.sysadmin,), "any"),
        audited=True,
    ),
    # key units (户籍化) and fire inspections (issue 13, geogrid.fieldwork)
    "unit.read": Action(
        "Key units in scope with their managers (masked), filings and due dates",
        _rule(_CASE_ROLES, "covers"),
        audited=True,
    ),
    "unit.write": Action(
        "Register and edit key units, their filings and inspection points in scope",
        _rule(_CASE_ROLES, "covers"),
        audited=True,
    ),
    "unit.unmask": Action(
        "See a key unit's managers' full names and phones",
        _rule(_CASE_ROLES, "covers"),
        permission="unmask",
        audited=True,
    ),
    "inspection.read": Action(
        "Fire inspection points, due and overdue lists, records, completion rates in scope",
        _rule(_CASE_ROLES, "covers"),
    ),
    "inspection.record": Action(
        "Record a fire inspection in scope (a failed item reports a fire-hazard case)",
        _rule(_CASE_ROLES, "covers"),
    ),
    "inspection.admin": Action(
        "Edit the fire-inspection checklist templates",
        {**_rule((Role.town_leader,), "covers"), **_rule((Role.sysadmin,), "any")},
        audited=True,
    ),
    "visit.read": Action(
        "Visit logs (民情日志, people met masked), visit coverage and the never-visited and "
        "due lists within scope",
        _rule(_CASE_ROLES, "covers"),
        audited=True,
    ),
    "visit.write": Action(
        "Record visits within scope and edit one's own",
        _rule((Role.village_leader, Role.grid_worker), "covers"),
        audited=True,
    ),
    "visit.admin": Action(
        "The visit plan's rules (an area in scope) and the follow-up intervals (all areas)",
        {**_rule((Role.town_leader,), "covers"), **_rule((Role.sysadmin,), "any")},
        audited=True,
    ),
    "page.field": Action(
        "The field app /field (网格员外勤): its page, service worker and manifest are public "
        "shells; its data comes from the field APIs",
        _rule((ANONYMOUS, *_ALL_ROLES), "any"),
    ),
    "field.bundle": Action(
        "The field app's offline bundle: one's own area (grid boundary, households with "
        "masked personal data, key units, due inspections, assigned cases)",
        _rule(_CASE_ROLES, "covers"),
        audited=True,
    ),
    "field.sync": Action(
        "Send the field app's outbox (cases, visits, inspections, follow-ups), each record "
        "also checked by its own action",
        _rule(_CASE_ROLES, "covers"),
    ),
    # assessment (量化考核, issue 14, A)
    "assessment.read": Action(
        "Assessment indicators, schemes, rounds, rankings and their exports within scope "
        "(numbers per area and worker, no personal data)",
        {
            **_rule((Role.town_leader, Role.village_leader, Role.planner, Role.viewer), "covers"),
            **_rule((Role.sysadmin,), "any"),
        },
    ),
    "assessment.manage": Action(
        "Edit assessment schemes, enter manual scores (自查、互查、抽查), create and publish "
        "assessment rounds",
        {**_rule((Role.town_leader,), "covers"), **_rule((Role.sysadmin,), "any")},
        audited=True,
    ),
    # grid teams (五个一同步), archives (一户一档·一组一本·一格一盒), dashboard (issue 14, B)
    "team.read": Action(
        "Grid teams (posts, party group, service team, archive) and their completeness",
        _rule(_WORK_ROLES, "overlaps"),
    ),
    "team.write": Action(
        "Edit a grid's team (party group, service team, archive) in scope",
        _rule((Role.town_leader,), "covers"),
        audited=True,
    ),
    "archive.export": Action(
        "Export a household's file, a group's book or a grid's box (PDF, Excel, GeoPackage; "
        "personal data masked) in scope",
        _rule(_CASE_ROLES, "covers"),
        audited=True,
    ),
    "archive.unmask": Action(
        "Export archives with full personal data (reason required)",
        _rule(_CASE_ROLES, "covers"),
        permission="unmask",
        audited=True,
    ),
    "dashboard.read": Action(
        "The leader's dashboard: case counts by period, category, status, area and worker "
        "in scope (no personal data)",
        _rule((Role.town_leader, Role.village_leader, Role.planner, Role.viewer), "covers"),
    ),
}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user (or an embed token, with ``embed_layers``)."""

    user_id: int
    username: str
    role: Role
    scope: Scope
    permissions: frozenset[str] = field(default_factory=frozenset)
    must_change_password: bool = False
    via: Literal["token", "session", "embed"] = "token"
    session_id: str | None = None
    embed_layers: frozenset[str] | None = None


def relation_for(principal: Principal | None, action: str) -> Relation | None:
    """The scope relation the policy grants ``principal`` for ``action`` (None: refused)."""
    try:
        rule = POLICY[action]
    except KeyError:
        raise ConfigurationError(f"action {action!r} is not in the policy table") from None
    key = ANONYMOUS if principal is None else str(principal.role)
    relation = rule.roles.get(key)
    if relation is None or principal is None:
        return relation
    if rule.permission and rule.permission not in principal.permissions:
        return None
    return relation


def check(principal: Principal | None, action: str, target_code: str | None = None) -> None:
    """Allow ``action`` on ``target_code`` for ``principal`` or raise.

    Raises
    ------
    Unauthenticated
        Nobody is signed in and the action is not public.
    Forbidden
        The role, permission or scope does not allow it.

    >>> p = Principal(1, "w", Role.grid_worker, Scope.parse("420117105201003"))
    >>> check(p, "case.read", "420117105201003")
    >>> check(p, "case.read", "420117105201004")
    Traceback (most recent call last):
    ...
    geogrid.errors.Forbidden: 420117105201004 is outside your scope (grid:420117105201003)
    """
    relation = relation_for(principal, action)
    if relation is None:
        if principal is None:
            raise Unauthenticated("sign in first: this needs an account (请先登录)")
        rule = POLICY[action]
        if rule.permission and str(principal.role) in rule.roles:
            raise Forbidden(f"this needs the {rule.permission!r} permission: {rule.description}")
        raise Forbidden(f"role {principal.role} may not do this: {rule.description}")
    if relation == "any" or principal is None:
        return
    if target_code is None:
        # lists: the caller filters by principal.scope in SQL
        return
    ok = (
        principal.scope.covers(target_code)
        if relation == "covers"
        else principal.scope.overlaps(target_code)
    )
    if not ok:
        raise Forbidden(f"{target_code} is outside your scope ({principal.scope})")
