"""What the case services return: plain dataclasses, the API's response shapes too."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "ActionInfo",
    "Attachment",
    "CaseDetail",
    "CaseFilter",
    "CaseMoved",
    "CaseSummary",
    "Category",
    "Created",
    "DuplicateHint",
    "Event",
    "GridDue",
    "PublicCase",
    "PublicEvent",
    "Reporter",
    "ReporterMasked",
]


@dataclass(frozen=True)
class Reporter:
    """Who reported a case (personal: stored apart, masked on every read)."""

    name: str | None = None
    phone: str | None = None
    user_id: int | None = None


@dataclass(frozen=True)
class ReporterMasked:
    name: str | None
    phone: str | None


@dataclass(frozen=True)
class PostInfo:
    kind: str
    code: str
    name: str | None = None


@dataclass(frozen=True)
class Owner:
    id: int
    username: str | None


@dataclass(frozen=True)
class CaseSummary:
    """A case as lists show it (no personal data)."""

    id: int
    case_no: str
    category: str
    category_code: str | None
    category_name: str | None
    status: str
    priority: int
    source: str
    reported_at: datetime
    updated_at: datetime
    lon: float
    lat: float
    village_code: str | None
    grid_code: str | None
    current_grid_code: str | None
    description: str | None
    address: str | None
    assignee: PostInfo | None
    owner: Owner | None
    pending: str | None
    due_at: datetime | None
    deadline_problem: str | None
    overdue: bool
    rework_count: int
    merged_into: int | None
    version: int


@dataclass(frozen=True)
class Event:
    """One transition."""

    seq: int
    action: str
    from_status: str | None
    to_status: str
    at: datetime
    actor: str
    actor_role: str | None
    note: str
    public: bool
    attachments: list[str]
    data: dict[str, Any]


@dataclass(frozen=True)
class Attachment:
    sha256: str
    mime: str
    size: int
    width: int | None
    height: int | None
    url: str
    thumb_url: str | None
    seq: int


@dataclass(frozen=True)
class ActionInfo:
    """An action the user may take now, with the body fields it needs."""

    action: str
    fields: list[str]


@dataclass(frozen=True)
class CaseDetail(CaseSummary):
    """One case: the summary, its masked reporter, events, actions and files."""

    reporter: ReporterMasked | None = None
    events: list[Event] = field(default_factory=list)
    allowed_actions: list[ActionInfo] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    etag: str = ""


@dataclass(frozen=True)
class CaseMoved:
    """A case right after an action, briefly (``Prefer: return=minimal``): its new state,
    version and the actions the user may take next; the rest is one GET away."""

    id: int
    case_no: str
    status: str
    version: int
    pending: str | None
    due_at: datetime | None
    deadline_problem: str | None
    assignee_kind: str | None
    assignee_code: str | None
    owner_id: int | None
    merged_into: int | None
    updated_at: datetime
    allowed_actions: list[ActionInfo]
    etag: str


@dataclass(frozen=True)
class DuplicateHint:
    """An open case of the same category near a new one."""

    id: int
    case_no: str
    status: str
    category: str
    distance_m: float
    reported_at: datetime
    description: str | None


@dataclass(frozen=True)
class Created:
    """A new case and the open cases it may duplicate."""

    case: CaseDetail
    duplicates: list[DuplicateHint]


@dataclass(frozen=True)
class GridDue:
    """Overdue and soon-due cases of one (historical) grid."""

    grid_code: str | None
    village_code: str | None
    overdue: int
    soon: int


@dataclass(frozen=True)
class Category:
    """An entry of the category dictionary with its step limits."""

    code: str
    name: str
    name_en: str | None
    parent_code: str | None
    active: bool
    aliases: list[str]
    limits: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class CaseFilter:
    """Filters of :func:`geogrid.cases.service.list_cases` (all optional, combined)."""

    status: tuple[str, ...] = ()
    category: str | None = None
    grid: str | None = None
    village: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    overdue: bool | None = None
    due_within_hours: float | None = None
    assignee: Literal["me"] | None = None
    source: str | None = None


@dataclass(frozen=True)
class PublicCase:
    """A case as the public sees it (Open311): no personal data, no staff names."""

    id: int
    case_no: str
    category_code: str | None
    category: str
    status: str
    description: str | None
    lon: float
    lat: float
    reported_at: datetime
    updated_at: datetime
    due_at: datetime | None
    address: str | None
    last_public_note: str | None
    media: list[str]
    merged_into: int | None
    source: str = ""
    agency: str | None = None
    """The name of the post handling it (a grid, village, department or the centre)."""
    public_events: list[PublicEvent] = field(default_factory=list)


@dataclass(frozen=True)
class PublicEvent:
    """A step residents may see: when, the status it led to, its public note."""

    at: datetime
    to_status: str
    note: str
