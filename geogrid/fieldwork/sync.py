"""The field app's outbox, received: each record created once, edits checked for conflicts.

The app keeps what a worker records offline (cases, visits, inspection records, special
follow-ups, and edits of their own visits) in an outbox, each record with a UUID it made
itself, and sends the outbox when the network returns — perhaps twice, when an answer was
lost. :func:`sync_records` handles each record in a transaction of its own (one bad record
never takes the others down) through :func:`geogrid.fieldwork.idempotency.once`, so a
record sent again finds what its first send created (``already-there``) and nothing is
created twice.

Edits carry the version they were based on; a record that changed on the server since
comes back as a ``conflict`` with the record as it is now (``current``), for the worker to
resolve, never overwritten. Photos are uploaded first (``POST /api/cases/files``) and the
records name them by sha256.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from geogrid.access import rls
from geogrid.access.policy import POLICY, Principal, check
from geogrid.cases import service as cases
from geogrid.errors import GeogridError, InvalidInput, log_summary
from geogrid.fieldwork.idempotency import once
from geogrid.plans import StaleVersion

__all__ = ["KINDS", "MAX_BATCH", "FieldCase", "OutboxRecord", "RecordResult", "sync_records"]

log = logging.getLogger(__name__)

#: What the outbox may hold, and the policy action each record also needs.
KINDS: dict[str, str] = {
    "case": "case.report",
    "visit": "visit.write",
    "inspection": "inspection.record",
    "followup": "special.write",
}
#: Records in one request (the app sends larger outboxes in batches).
MAX_BATCH = 200

Status = Literal["created", "already-there", "updated", "conflict", "error"]


class OutboxRecord(BaseModel):
    """One record of the outbox as the app sends it."""

    model_config = ConfigDict(extra="forbid")

    client_id: uuid.UUID = Field(description="made by the app; the idempotency key")
    kind: Literal["case", "visit", "inspection", "followup"]
    body: dict[str, Any] = Field(description="the record, as the service of its kind takes it")
    record_id: int | None = Field(
        default=None, ge=1, le=2**62, description="an edit: the record it changes (visits)"
    )
    base_version: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="an edit: the version it was based on"
    )


class FieldCase(BaseModel):
    """A case reported from the field app (source ``grid_worker``)."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1, max_length=40, description="code (0401) or name")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    description: str = Field(min_length=1, max_length=cases.MAX_DESCRIPTION)
    priority: int = Field(default=2, ge=1, le=3)
    address: str | None = Field(default=None, max_length=200)
    photos: list[str] = Field(default_factory=list, max_length=cases.MAX_ATTACHMENTS)
    recorded_at: dt.datetime | None = Field(
        default=None, description="when the worker recorded it (offline); default: now"
    )
    position_source: Literal["gps", "map", "none"] | None = None
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000)


class RecordResult(BaseModel):
    """What became of one outbox record."""

    client_id: uuid.UUID
    kind: str
    status: Status
    record_id: int | None = None
    version: int | None = None
    code: str | None = Field(default=None, description="error code (errors.<code> in pages)")
    reason: str | None = None
    current: dict[str, Any] | None = Field(
        default=None, description="a conflict: the record as the server holds it now"
    )


def _service(module: str, name: str) -> Callable[..., Any]:
    """A field service of another module, or a clear refusal when it is not there yet."""
    try:
        found = getattr(importlib.import_module(f"geogrid.fieldwork.{module}"), name, None)
    except ImportError:
        found = None
    if not callable(found):
        raise InvalidInput(f"this server does not take {module} records yet")
    return found


def _problems(exc: ValidationError) -> str:
    """A validation error without the values sent (they may be personal)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    )[:500]


def _case(conn: Connection, principal: Principal, rec: OutboxRecord, ip: str | None) -> Any:
    data = FieldCase.model_validate(rec.body)
    now = dt.datetime.now(dt.UTC)
    when = data.recorded_at
    if when is not None and when.tzinfo is None:
        raise InvalidInput("recorded_at needs a time zone")
    if when is not None and when > now:  # a phone's clock ahead of ours
        when = now

    def create() -> int:
        made = cases.create_case(
            conn,
            principal=principal,
            category=data.category,
            lon=data.lon,
            lat=data.lat,
            description=data.description,
            source="grid_worker",
            priority=data.priority,
            attachments=data.photos,
            reported_at=when,
            address=data.address,
            ip=ip,
        )
        return int(made.case.id)

    case_id, created = once(
        conn, principal=principal, client_id=rec.client_id, kind="case", create=create
    )
    return case_id, created, None


def _visit(conn: Connection, principal: Principal, rec: OutboxRecord, ip: str | None) -> Any:
    if rec.record_id is None:
        saved = _service("visits", "record_visit")(
            conn, principal=principal, client_id=rec.client_id, body=rec.body, ip=ip
        )
        return int(saved.id), bool(getattr(saved, "created", True)), int(saved.version)
    if rec.base_version is None:
        raise InvalidInput("an edit needs the version it was based on (base_version)")
    update = _service("visits", "update_visit")
    versions: list[int] = []
    visit_id = rec.record_id

    def edit() -> int:
        changed = update(
            conn, principal=principal, visit_id=visit_id, expected_version=rec.base_version,
            body=rec.body, ip=ip,
        )  # fmt: skip
        versions.append(int(changed.version))
        return int(changed.id)

    # the edit's own key: sent again after a lost answer, it is found, not re-applied
    # (re-applying would look like a conflict with itself)
    _, edited = once(
        conn, principal=principal, client_id=rec.client_id, kind="visit_edit", create=edit
    )
    return visit_id, edited, versions[0] if versions else None


def _inspection(conn: Connection, principal: Principal, rec: OutboxRecord, ip: str | None) -> Any:
    record = _service("inspections", "record_inspection")
    model: Any = _service("inspection_records", "InspectionCreate")  # the body it takes
    made = record(
        conn,
        principal=principal,
        client_id=rec.client_id,
        body=model.model_validate(rec.body),
        ip=ip,
    )
    return int(made.id), bool(getattr(made, "created", True)), getattr(made, "version", None)


def _followup(conn: Connection, principal: Principal, rec: OutboxRecord, ip: str | None) -> Any:
    made = _service("followups", "record_followup")(
        conn, principal=principal, client_id=rec.client_id, body=rec.body, ip=ip
    )
    return int(made.id), bool(getattr(made, "created", True)), None


_HANDLERS = {"case": _case, "visit": _visit, "inspection": _inspection, "followup": _followup}


def _current(exc: StaleVersion) -> dict[str, Any] | None:
    """The record as it is now, from a stale-version error (``detail.current``)."""
    inner = exc.detail.get("detail")
    found = inner.get("current") if isinstance(inner, dict) else exc.detail.get("current")
    return found if isinstance(found, dict) else None


def _one(conn: Connection, principal: Principal, rec: OutboxRecord, ip: str | None) -> RecordResult:
    action = KINDS[rec.kind]
    if action not in POLICY:
        raise InvalidInput(f"this server does not take {rec.kind} records yet")
    check(principal, action)
    if rec.record_id is not None and rec.kind != "visit":
        raise InvalidInput("only visits can be edited from the field app")
    record_id, fresh, version = _HANDLERS[rec.kind](conn, principal, rec, ip)
    if rec.record_id is not None:
        status: Status = "updated" if fresh else "already-there"
    else:
        status = "created" if fresh else "already-there"
    return RecordResult(
        client_id=rec.client_id, kind=rec.kind, status=status, record_id=record_id,
        version=version,
    )  # fmt: skip


def sync_records(
    conn: Connection,
    *,
    principal: Principal,
    records: Sequence[OutboxRecord | dict[str, Any]],
    ip: str | None = None,
) -> list[RecordResult]:
    """Create (or find) each outbox record, each in a transaction of its own.

    Parameters
    ----------
    conn
        A connection; each record runs in its own transaction on it (committed or rolled
        back here), with the principal's row-level scope set for it.
    principal
        The worker sending the outbox; every record is checked against the policy action
        of its kind (``case.report``, ``visit.write``, ...) and the scope by its service.
    records
        At most :data:`MAX_BATCH` records.
    ip
        The client's address, for the audit log.

    Returns
    -------
    list[RecordResult]
        One per record, in order: ``created``, ``already-there`` (the client id was sent
        before: nothing new), ``updated`` (an edit), ``conflict`` (an edit based on an older
        version: ``current`` holds the record as it is now) or ``error`` (``code`` and
        ``reason``; nothing of that record was kept).

    Raises
    ------
    InvalidInput
        More than :data:`MAX_BATCH` records, or one client id twice in the batch.
    """
    if len(records) > MAX_BATCH:
        raise InvalidInput(f"send at most {MAX_BATCH} records at once")
    parsed: list[OutboxRecord | tuple[uuid.UUID | None, str, str]] = []
    for raw in records:
        try:
            parsed.append(
                raw if isinstance(raw, OutboxRecord) else OutboxRecord.model_validate(raw)
            )
        except ValidationError as exc:
            parsed.append((_raw_id(raw), str(_field(raw, "kind")), _problems(exc)))
    ids = [p.client_id for p in parsed if isinstance(p, OutboxRecord)]
    if len(ids) != len(set(ids)):
        raise InvalidInput("each record of a batch needs its own client_id")
    if conn.in_transaction():
        conn.commit()
    results: list[RecordResult] = []
    for rec in parsed:
        if not isinstance(rec, OutboxRecord):
            cid, kind, why = rec
            bad = RecordResult(
                client_id=cid or uuid.UUID(int=0), kind=kind[:20], status="error",
                code="InvalidInput", reason=why,
            )  # fmt: skip
            results.append(bad)
            continue
        results.append(_in_transaction(conn, principal, rec, ip))
    return results


def _in_transaction(
    conn: Connection, principal: Principal, rec: OutboxRecord, ip: str | None
) -> RecordResult:
    """One record in a transaction of its own: committed when it worked, else rolled back."""
    base = {"client_id": rec.client_id, "kind": rec.kind}
    try:
        rls.apply(conn, principal)
        result = _one(conn, principal, rec, ip)
        conn.commit()
        return result
    except StaleVersion as exc:
        conn.rollback()
        return RecordResult(
            **base, status="conflict", record_id=rec.record_id, code="StaleVersion",
            reason=exc.message, current=_current(exc),
        )  # fmt: skip
    except ValidationError as exc:
        conn.rollback()
        return RecordResult(**base, status="error", code="InvalidInput", reason=_problems(exc))
    except GeogridError as exc:
        conn.rollback()
        return RecordResult(
            **base, status="error", code=type(exc).__name__, reason=exc.message[:500]
        )
    except SQLAlchemyError as exc:  # never SQL text (it may hold personal values) to the app
        conn.rollback()
        log.error("field sync: record %s failed: %s", rec.client_id, log_summary(exc))
        return RecordResult(
            **base, status="error", code="InternalError", reason="the record could not be saved"
        )


def _field(raw: Any, name: str) -> Any:
    return raw.get(name) if isinstance(raw, dict) else getattr(raw, name, None)


def _raw_id(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(_field(raw, "client_id")))
    except (ValueError, TypeError):
        return None
