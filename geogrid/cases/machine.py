"""The case workflow as data: statuses, the transitions each role may make, and replay.

"采集上报 — 指挥派遣 — 处置反馈 — 任务核查 — 入库评价 — 结案归档": a case moves by the
rows of :data:`TRANSITIONS`. A row names the action, the statuses it starts from, where it
leads, the roles that may take it, the *duty* the user must have towards the case, the
body fields it needs and its effects. :mod:`geogrid.cases.service` finds the row, checks
it, computes the effects into the event's ``data["set"]`` and appends the event; the
current-state row is then :func:`apply` of that event to the row before it, so the row is
always :func:`replay` of the events.

Duties
------
``scope``
    the case is inside the user's scope;
``post``
    the user stands at the case's current post (grid worker or village leader covering
    the grid, village leader of the village, member of the department, town leader of
    the centre);
``owner``
    the first-responsibility owner (首问负责: who accepted the case), or a town leader
    in scope;
``target``
    the user a pending transfer names;
``checker``
    in scope, and not the user who handled the case (no one checks their own work).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from geogrid.access.policy import Role

__all__ = [
    "CLOSED_STATUSES",
    "OPEN_STATUSES",
    "RESIDENT_SOURCES",
    "SOURCES",
    "STATE_FIELDS",
    "STATUSES",
    "STEPS",
    "TRANSITIONS",
    "Transition",
    "actions_from",
    "apply",
    "replay",
    "step_for",
]

STATUSES: Final = (
    "reported",
    "accepted",
    "rejected",
    "verified",
    "registered",
    "voided",
    "dispatched",
    "in_progress",
    "suspended",
    "handled",
    "checked",
    "evaluated",
    "closed",
    "archived",
    "merged",
)
CLOSED_STATUSES: Final = frozenset({"rejected", "voided", "closed", "archived", "merged"})
OPEN_STATUSES: Final = frozenset(STATUSES) - CLOSED_STATUSES
#: Statuses whose step deadline runs (suspended cases are excluded from on-time counts).
TIMED_STATUSES: Final = OPEN_STATUSES - {"suspended"}
SOURCES: Final = ("grid_worker", "open311", "hotline", "inspection", "import")
#: Residents' reports are verified on site before they are registered.
RESIDENT_SOURCES: Final = frozenset({"open311", "hotline"})
STEPS: Final = ("accept", "verify", "register", "dispatch", "handle", "check", "evaluate", "close")
PRIORITIES: Final = (1, 2, 3)
RATINGS: Final = ("satisfied", "basic", "unsatisfied")

Duty = Literal["scope", "post", "owner", "target", "checker"]
Pending = Literal["extension", "suspension", "transfer"]
Effect = Literal[
    "owner",
    "post",
    "centre",
    "handler",
    "rework",
    "request",
    "approve_extension",
    "clear_pending",
    "suspend",
    "resume",
    "transfer",
    "acknowledge",
    "merge",
    "close",
]

_CASE: Final = frozenset({Role.town_leader, Role.village_leader, Role.grid_worker})
_CENTRE: Final = frozenset({Role.town_leader})
_FIELD: Final = frozenset({Role.village_leader, Role.grid_worker})
_CHECK: Final = frozenset({Role.town_leader, Role.grid_worker})
_WORK: Final = frozenset({"dispatched", "in_progress"})


@dataclass(frozen=True)
class Transition:
    """One row of the machine.

    Attributes
    ----------
    action
        The name clients send.
    sources
        Statuses it may start from.
    target
        The status it leads to; ``None`` leaves the status as it is; ``"resume"`` goes back
        to the status the case was suspended in.
    roles, duty
        Who may take it.
    fields
        Body fields it requires (``note`` included when a reason must be given).
    when
        ``"resident"`` / ``"staff"``: only for cases of resident / staff sources.
    pending
        The pending request it needs (``"none"``: none may be pending; ``None``: either).
    effects
        What it changes besides the status (see :mod:`geogrid.cases.service`).
    queue
        A step someone must take: the case waits in the inbox of users who may take it.
    """

    action: str
    sources: frozenset[str]
    target: str | None
    roles: frozenset[Role]
    duty: Duty
    fields: tuple[str, ...] = ()
    when: Literal["resident", "staff"] | None = None
    pending: Pending | Literal["none"] | None = None
    effects: tuple[Effect, ...] = ()
    queue: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "from": sorted(self.sources),
            "to": self.target,
            "roles": sorted(str(r) for r in self.roles),
            "duty": self.duty,
            "fields": list(self.fields),
            "when": self.when,
            "pending": self.pending,
            "queue": self.queue,
        }


def _t(
    action: str,
    sources: Iterable[str],
    target: str | None,
    roles: frozenset[Role],
    duty: Duty,
    **kw: Any,
) -> Transition:
    return Transition(action, frozenset(sources), target, roles, duty, **kw)


#: The machine. Several rows may share an action (other sources, roles or duties).
TRANSITIONS: Final[tuple[Transition, ...]] = (
    _t("accept", {"reported"}, "accepted", _CASE, "scope", effects=("owner",), queue=True),
    _t("reject", {"reported"}, "rejected", _CASE, "scope", fields=("note",)),
    _t("verify", {"accepted"}, "verified", _FIELD, "scope", when="resident", queue=True),
    _t("register", {"accepted"}, "registered", _CENTRE, "scope", when="staff", queue=True),
    _t("register", {"verified"}, "registered", _CENTRE, "scope", queue=True),
    _t("void", {"accepted", "verified"}, "voided", _CENTRE, "scope", fields=("note",)),
    _t("dispatch", {"registered"}, "dispatched", _CENTRE, "scope", effects=("post",), queue=True),
    _t(
        "return", {"dispatched"}, "registered", _CASE, "post", fields=("note",), effects=("centre",)
    ),
    _t("start", {"dispatched"}, "in_progress", _CASE, "post", queue=True),
    _t("handle", {"in_progress"}, "handled", _CASE, "post", effects=("handler",), queue=True),
    _t("check_pass", {"handled"}, "checked", _CHECK, "checker", queue=True),
    _t(
        "check_fail",
        {"handled"},
        "in_progress",
        _CHECK,
        "checker",
        fields=("note",),
        effects=("rework",),
    ),
    _t("evaluate", {"checked"}, "evaluated", _CENTRE, "scope", fields=("rating",), queue=True),
    _t("close", {"evaluated"}, "closed", _CENTRE, "scope", effects=("close",), queue=True),
    _t("archive", {"closed", "rejected", "voided"}, "archived", _CENTRE, "scope"),
    _t(
        "request_extension",
        _WORK,
        None,
        _CASE,
        "post",
        fields=("amount", "unit", "note"),
        pending="none",
        effects=("request",),
    ),
    _t(
        "approve_extension",
        _WORK,
        None,
        _CENTRE,
        "scope",
        pending="extension",
        effects=("approve_extension",),
        queue=True,
    ),
    _t(
        "deny_extension",
        _WORK,
        None,
        _CENTRE,
        "scope",
        fields=("note",),
        pending="extension",
        effects=("clear_pending",),
    ),
    _t(
        "request_suspension",
        _WORK,
        None,
        _CASE,
        "post",
        fields=("note",),
        pending="none",
        effects=("request",),
    ),
    _t(
        "approve_suspension",
        _WORK,
        "suspended",
        _CENTRE,
        "scope",
        pending="suspension",
        effects=("suspend",),
        queue=True,
    ),
    _t(
        "deny_suspension",
        _WORK,
        None,
        _CENTRE,
        "scope",
        fields=("note",),
        pending="suspension",
        effects=("clear_pending",),
    ),
    _t("resume", {"suspended"}, "resume", _CENTRE, "scope", effects=("resume",)),
    _t("resume", {"suspended"}, "resume", _CASE, "post", effects=("resume",)),
    _t(
        "transfer",
        OPEN_STATUSES,
        None,
        _CASE,
        "owner",
        fields=("to_user",),
        pending="none",
        effects=("transfer",),
    ),
    _t(
        "acknowledge_transfer",
        OPEN_STATUSES,
        None,
        _CASE,
        "target",
        pending="transfer",
        effects=("acknowledge",),
        queue=True,
    ),
    _t(
        "merge",
        {"reported", "accepted", "verified", "registered"},
        "merged",
        _CASE,
        "scope",
        fields=("into",),
        effects=("merge",),
    ),
    _t(
        "comment",
        frozenset(STATUSES) - {"archived", "merged"},
        None,
        _CASE,
        "scope",
        fields=("note",),
    ),
)

ACTIONS: Final = tuple(dict.fromkeys(t.action for t in TRANSITIONS))


def actions_from(status: str) -> list[Transition]:
    """The rows that start from ``status``."""
    return [t for t in TRANSITIONS if status in t.sources]


def step_for(status: str, source: str) -> str | None:
    """The step whose deadline runs while a case is in ``status`` (``None``: none).

    >>> step_for("accepted", "open311"), step_for("accepted", "grid_worker")
    ('verify', 'register')
    >>> step_for("in_progress", "hotline"), step_for("closed", "open311")
    ('handle', None)
    """
    if status == "accepted":
        return "verify" if source in RESIDENT_SOURCES else "register"
    return {
        "reported": "accept",
        "verified": "register",
        "registered": "dispatch",
        "dispatched": "handle",
        "in_progress": "handle",
        "handled": "check",
        "checked": "evaluate",
        "evaluated": "close",
    }.get(status)


# --------------------------------------------------------------------------- replay

#: The fields of the current-state row that events decide, and their value before any event.
STATE_FIELDS: Final[dict[str, Any]] = {
    "status": None,
    "version": 0,
    "owner_id": None,
    "handled_by": None,
    "pending": None,
    "pending_data": None,
    "resume_status": None,
    "due_at": None,
    "due_step": None,
    "deadline_problem": None,
    "rework_count": 0,
    "merged_into": None,
    "assignee_kind": None,
    "assignee_code": None,
    "route_kind": None,
    "route_code": None,
    "closed_at": None,
}
_TIMES: Final = frozenset({"due_at", "closed_at"})


def _value(key: str, value: Any) -> Any:
    if key in _TIMES and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def apply(
    state: Mapping[str, Any], seq: int, to_status: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The state after one event: its status, its version, and what it ``set``.

    >>> s = apply(STATE_FIELDS, 1, "reported", {"set": {"route_kind": "grid"}})
    >>> s["status"], s["version"], s["route_kind"]
    ('reported', 1, 'grid')
    """
    out = dict(state)
    unknown = set(data.get("set", {})) - set(STATE_FIELDS)
    if unknown:
        raise ValueError(f"an event sets unknown fields: {sorted(unknown)}")
    out["status"] = to_status
    out["version"] = seq
    for key, value in data.get("set", {}).items():
        out[key] = _value(key, value)
    return out


def replay(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The workflow fields of a case from its events (``seq``, ``to_status``, ``data``), in
    order; raises ``ValueError`` on a gap in the sequence."""
    state: dict[str, Any] = dict(STATE_FIELDS)
    for expected, event in enumerate(events, start=1):
        if event["seq"] != expected:
            raise ValueError(f"event {event['seq']} where {expected} was expected")
        state = apply(state, event["seq"], event["to_status"], event["data"])
    return state
